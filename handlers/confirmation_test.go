package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// pngBlob is a data: URI whose content starts as a PNG file does, padded
// to size bytes.
func pngBlob(size int) string {
	b := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, size-8)...)
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b)
}

// confirmation is a POST …/confirmations body.
func confirmation(kind string, where domain.Location, blob string) []byte {
	m := map[string]any{"dateTime": t0.Format(time.RFC3339), "geoCoordinates": where, "confirmationType": kind}
	if blob != "" {
		m["confirmationBlob"] = blob
	}
	return mustJSON(m)
}

// headedToDropoff flies a delivery asking for a confirmation of kind from
// its pickup toward its dropoff and returns the dropoff.
func (f *fixture) headedToDropoff(t *testing.T, id, kind string) domain.Location {
	t.Helper()
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "drone-" + id, Location: pickup})
	body, _ := json.Marshal(map[string]any{"deliveryId": id, "pickupLocation": pickup, "dropOffLocation": drop,
		"confirmationRequired": kind, "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	f.drain(t)
	f.report(t, "drone-"+id, pickup, 90, t0.Add(time.Minute))
	require.Equal(t, domain.StageHeadedToDropoff, f.delivery(t, id).Stage)
	return drop
}

// delivered flies a delivery that asks for no confirmation to its
// dropoff, which completes it, and returns the dropoff.
func (f *fixture) delivered(t *testing.T, id string) domain.Location {
	t.Helper()
	drop := f.headedToDropoff(t, id, "None")
	f.report(t, "drone-"+id, drop, 80, t0.Add(2*time.Minute))
	require.Equal(t, domain.StageCompleted, f.delivery(t, id).Stage)
	return drop
}

func (f *fixture) confirm(id string, body []byte) *functionapp.Response {
	return f.biz("PostConfirmation", &functionapp.Request{Method: "POST", Params: map[string]string{"id": id}, Body: body})
}

func TestConfirmationIsValidatedStoredOnceAndReadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.headedToDropoff(t, "conf", "Picture")
	near := domain.Location{Latitude: drop.Latitude + 0.0003, Longitude: drop.Longitude} // about 33 m
	picture := pngBlob(1024)
	assert.Equal(t, http.StatusConflict, f.confirm("conf", confirmation("Picture", near, picture)).Status, "not before it is delivered")

	f.report(t, "drone-conf", drop, 80, t0.Add(2*time.Minute))
	require.Equal(t, domain.StageCompleted, f.delivery(t, "conf").Stage)
	jpeg := "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 64)...))
	future := confirmation("Picture", near, picture)
	future = bytes.Replace(future, []byte(t0.Format(time.RFC3339)), []byte(t0.Add(time.Hour).Format(time.RFC3339)), 1)
	past := confirmation("Picture", near, picture)
	past = bytes.Replace(past, []byte(t0.Format(time.RFC3339)), []byte("2020-01-01T00:00:00Z"), 1)
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		field  string
		says   string
	}{
		{"too far", confirmation("Picture", domain.Location{Latitude: drop.Latitude + 0.002, Longitude: drop.Longitude}, picture), 422, "geoCoordinates", ""},
		{"another type than required", confirmation("Voice", near, "data:audio/mpeg;base64,SUQzAwAAAAAA"), 422, "confirmationType", ""},
		{"a blob type a picture does not take", confirmation("Picture", near, "data:audio/mpeg;base64,SUQzAwAAAAAA"), 422, "confirmationBlob", ""},
		{"a blob that is not what it declares", confirmation("Picture", near, "data:image/png"+jpeg[len("data:image/jpeg"):]), 422, "confirmationBlob", ""},
		{"a blob over 256 KiB", confirmation("Picture", near, pngBlob(wire.MaxConfirmationBlobBytes+1)), 413, "confirmationBlob", ""},
		{"no blob", confirmation("Picture", near, ""), 400, "confirmationBlob", ""},
		{"a blob that is not a data: URI", confirmation("Picture", near, base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n"))), 400, "confirmationBlob", ""},
		{"a blob that is not base64", confirmation("Picture", near, "data:image/png;base64,***"), 400, "confirmationBlob", ""},
		{"dated in the future", future, 422, "dateTime", "more than 5m0s ahead of the service's clock"},
		{"dated before the pickup", past, 422, "dateTime", "more than 5m0s before the package was picked up"},
	} {
		resp := f.confirm("conf", c.body)
		assert.Equal(t, c.status, resp.Status, "%s: %s", c.name, resp.Body)
		assert.Equal(t, c.field, problemOf(t, resp).Field, c.name)
		assert.Contains(t, problemOf(t, resp).Detail, c.says, "%s: the detail says the tolerance", c.name)
	}
	require.Nil(t, f.delivery(t, "conf").Confirmation, "a refused confirmation changes nothing")

	resp := f.confirm("conf", confirmation("Picture", near, jpeg))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/deliveries/conf/confirmation", resp.Header.Get("Location"))
	var made map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &made))
	assert.Equal(t, "image/jpeg", made["blobType"])
	assert.EqualValues(t, 68, made["blobBytes"])
	assert.InDelta(t, 33.4, made["distanceMeters"], 0.5)
	assert.NotContains(t, made, "confirmationBlob")

	for _, again := range [][]byte{confirmation("Picture", near, jpeg), confirmation("Picture", near, picture)} {
		resp := f.confirm("conf", again)
		assert.Equal(t, http.StatusConflict, resp.Status, "a second confirmation: %s", resp.Body)
	}

	// Readable: on the delivery without the blob, at href with it, and in
	// the history.
	get := func(name string) *functionapp.Response {
		return f.biz(name, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "conf"}})
	}
	var view struct {
		Confirmation map[string]any `json:"confirmation"`
	}
	require.NoError(t, json.Unmarshal(get("GetDelivery").Body, &view))
	assert.Equal(t, "Picture", view.Confirmation["confirmationType"])
	assert.Equal(t, "/api/deliveries/conf/confirmation", view.Confirmation["href"])
	assert.NotContains(t, view.Confirmation, "confirmationBlob")
	var full map[string]any
	resp = get("GetConfirmation")
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.NoError(t, json.Unmarshal(resp.Body, &full))
	assert.Equal(t, jpeg, full["confirmationBlob"], "the blob as it was sent")
	assert.Equal(t, "conf", full["deliveryId"])
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal(get("GetHistory").Body, &hist))
	last := hist.Events[len(hist.Events)-1]
	assert.Equal(t, domain.EventConfirmed, last.Kind)
	assert.Equal(t, domain.StageCompleted, last.Stage)
	assert.Equal(t, "confirmed by a picture", last.Note)
	require.NoError(t, domain.LegalHistory(hist.Events))

	// Another account sees none of it.
	_, otherKey := f.signUpOther(t)
	other := f.call("GetConfirmation", otherKey, &functionapp.Request{Method: "GET", Params: map[string]string{"id": "conf"}})
	assert.Equal(t, http.StatusNotFound, other.Status)
	other = f.call("PostConfirmation", otherKey, &functionapp.Request{Method: "POST", Params: map[string]string{"id": "conf"}, Body: confirmation("Picture", near, picture)})
	assert.Equal(t, http.StatusNotFound, other.Status)
}

func TestConfirmationOfAnyTypeWhenNoneIsRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.delivered(t, "any")
	assert.Equal(t, http.StatusBadRequest, f.confirm("any", confirmation("None", drop, pngBlob(64))).Status, "None takes no blob")
	resp := f.confirm("any", confirmation("FingerPrint", drop, pngBlob(64)))
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	// None needs no blob, and GET …/confirmation has none to show.
	drop = f.delivered(t, "plain")
	require.Equal(t, http.StatusCreated, f.confirm("plain", confirmation("None", drop, "")).Status)
	resp = f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "plain"}})
	require.Equal(t, http.StatusOK, resp.Status)
	assert.NotContains(t, string(resp.Body), "confirmationBlob")
	resp = f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "nothing-here"}})
	assert.Equal(t, http.StatusNotFound, resp.Status)
}

func TestConfirmationRadiusIsConfigurable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	drop := f.delivered(t, "wide")
	away := domain.Location{Latitude: drop.Latitude + 0.002, Longitude: drop.Longitude} // about 222 m
	resp := f.confirm("wide", confirmation("None", away, ""))
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status)
	assert.Contains(t, problemOf(t, resp).Detail, "within 100 m of the dropoff; it is 222 m away")

	wide := handlers.New(handlers.Deps{Store: f.store, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler),
		Config: handlers.Config{Confirmation: domain.ConfirmationRules{RadiusKm: 0.25}}})
	resp = functionapp.Call(t.Context(), wide.Registry()["PostConfirmation"].HTTP, &functionapp.Request{Method: "POST",
		Params: map[string]string{"id": "wide"}, Body: confirmation("None", away, ""),
		Header: http.Header{"Authorization": {"Bearer " + f.key}, "Content-Type": {"application/json"}}})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, fmt.Sprint(222.4), fmt.Sprint(f.delivery(t, "wide").Confirmation.DistanceMeters))
}

// distinctPNG is a PNG data: URI of size bytes whose content differs for
// each n, and the hex SHA-256 of that content.
func distinctPNG(size, n int) (string, string) {
	b := make([]byte, size)
	copy(b, "\x89PNG\r\n\x1a\n")
	for i := 8; i < size; i++ {
		b[i] = byte(n + i)
	}
	sum := sha256.Sum256(b)
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b), hex.EncodeToString(sum[:])
}

// storedBlobs counts the blobs of delivery id among shas that the
// Confirmations collection holds with their content.
func storedBlobs(t *testing.T, st ports.Store, id string, shas []string) (stored []string) {
	t.Helper()
	for _, sha := range shas {
		b, err := st.Confirmations.Find(context.Background(), domain.ConfirmationBlobID(id, sha))
		if domain.IsCode(err, domain.ENOTFOUND) {
			continue
		}
		require.NoError(t, err)
		if len(b.Data) > 0 {
			stored = append(stored, sha)
		}
	}
	return stored
}

// The probe that found the bug: many proofs of delivery, each a different
// file, posted at once to one Completed delivery. One wins; the others get
// 409 and leave no file stored.
func TestRacingConfirmationsStoreOnlyTheWinnersBlob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const id, n = "proofrace", 24
	drop := f.delivered(t, id)
	bodies, shas := make([][]byte, n), make([]string, n)
	for i := range n {
		var blob string
		blob, shas[i] = distinctPNG(wire.MaxConfirmationBlobBytes, i)
		bodies[i] = confirmation("Picture", drop, blob)
	}
	statuses := make([]int, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			resp := f.confirm(id, bodies[i])
			statuses[i] = resp.Status
			if resp.Status != http.StatusCreated && resp.Status != http.StatusConflict {
				t.Errorf("upload %d: %d %s", i, resp.Status, resp.Body)
			}
		}()
	}
	start.Done()
	done.Wait()

	winner := -1
	for i, s := range statuses {
		if s == http.StatusCreated {
			require.Equal(t, -1, winner, "a second 201: %v", statuses)
			winner = i
		}
	}
	require.NotEqual(t, -1, winner, "no 201: %v", statuses)
	c := f.delivery(t, id).Confirmation
	require.NotNil(t, c)
	assert.Equal(t, shas[winner], c.BlobSHA256)
	assert.Equal(t, []string{shas[winner]}, storedBlobs(t, f.store, id, shas), "only the winner's file is stored")

	resp := f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `"blobSha256":"`+shas[winner]+`"`)
}

// hookedBlobs runs before on the first Create of a blob, as if another
// instance of the service got there first.
type hookedBlobs struct {
	ports.ConfirmationBlobs
	once   sync.Once
	before func(ctx context.Context)
}

func (b *hookedBlobs) Create(ctx context.Context, id string, v *domain.ConfirmationBlob) error {
	b.once.Do(func() { b.before(ctx) })
	return b.ConfirmationBlobs.Create(ctx, id, v)
}

// A race this process cannot see (another instance confirms between this
// one's read of the delivery and its update): the loser gets 409 and its
// file is not kept, while the winner's stays readable.
func TestConfirmationLosingToAnotherInstanceDeletesItsBlob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const id = "proofrace-far"
	drop := f.delivered(t, id)
	theirs, theirSHA := distinctPNG(4096, 1)
	ours, ourSHA := distinctPNG(4096, 2)
	var won atomic.Bool
	st := f.store
	st.Confirmations = &hookedBlobs{ConfirmationBlobs: f.store.Confirmations, before: func(ctx context.Context) {
		// The other instance stores its blob and confirms, as
		// PostConfirmation does.
		p, err := wire.ParseConfirmation(confirmation("Picture", drop, theirs))
		require.NoError(t, err)
		require.NoError(t, f.store.Confirmations.Create(ctx, domain.ConfirmationBlobID(id, theirSHA),
			&domain.ConfirmationBlob{ID: domain.ConfirmationBlobID(id, theirSHA), DeliveryID: id, OwnerID: f.acct,
				ContentType: "image/png", Data: p.Blob, CreatedAt: t0}))
		_, err = f.store.Deliveries.Update(ctx, id, func(d *domain.Delivery) error {
			return d.Confirm(p.Confirmation, domain.ConfirmationRules{}, f.clock.Now())
		})
		require.NoError(t, err)
		won.Store(true)
	}}
	h := handlers.New(handlers.Deps{Store: st, Bus: f.bus, Clock: f.clock, IDs: platform.IDs{}, Log: slog.New(slog.DiscardHandler)})
	resp := functionapp.Call(t.Context(), h.Registry()["PostConfirmation"].HTTP, &functionapp.Request{Method: "POST",
		Params: map[string]string{"id": id}, Body: confirmation("Picture", drop, ours),
		Header: http.Header{"Authorization": {"Bearer " + f.key}, "Content-Type": {"application/json"}}})
	require.True(t, won.Load())
	assert.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, []string{theirSHA}, storedBlobs(t, f.store, id, []string{theirSHA, ourSHA}), "the loser's file is not kept")
	_, err := f.store.Confirmations.Find(context.Background(), domain.ConfirmationBlobID(id, ourSHA))
	assert.Equal(t, domain.ENOTFOUND, domain.ErrorCode(err), "nor its document: %v", err)

	get := f.biz("GetConfirmation", &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusOK, get.Status, string(get.Body))
	assert.True(t, strings.Contains(string(get.Body), theirs[len("data:image/png;base64,"):]), "the winner's blob as it was sent")
}
