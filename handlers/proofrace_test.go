package handlers_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

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
