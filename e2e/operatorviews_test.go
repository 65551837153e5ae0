package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/servicebus"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// waitingDoc is one item of GET /api/operator/deliveries.
type waitingDoc struct {
	ID         string          `json:"id"`
	OwnerID    string          `json:"ownerId"`
	Stage      domain.Stage    `json:"stage"`
	WaitKind   domain.WaitKind `json:"waitKind"`
	WaitReason string          `json:"waitReason"`
}

type waitingPage struct {
	Items      []waitingDoc `json:"items"`
	NextCursor string       `json:"nextCursor"`
}

// waiting reads one page of the operator's listing of waiting deliveries.
func waiting(t *testing.T, a api, query string) waitingPage {
	t.Helper()
	resp := a.fleet(t, "GET", "/api/operator/deliveries"+query, nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var page waitingPage
	resp.decode(t, &page)
	return page
}

// waitingByID reads the whole listing, newest first, into a map by id and
// the order of its ids.
func waitingByID(t *testing.T, a api, query string) (map[string]waitingDoc, []string) {
	t.Helper()
	out := map[string]waitingDoc{}
	var ids []string
	cursor := ""
	for {
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		page := waiting(t, a, q)
		for _, d := range page.Items {
			out[d.ID] = d
			ids = append(ids, d.ID)
		}
		if page.NextCursor == "" {
			return out, ids
		}
		cursor = page.NextCursor
	}
}

// problemField is the field a problem answer names.
func problemField(t *testing.T, resp *response) string {
	t.Helper()
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), string(resp.Body))
	var p struct {
		Field string `json:"field"`
	}
	resp.decode(t, &p)
	return p.Field
}

// waitingScenario runs on any backend: one drone serves one delivery, a
// second waits for it, a third is booked for later, and a pause holds the
// second; the operator's listing shows the two waiting with their reasons,
// in order, page by page, and refuses a business key and bad input.
func waitingScenario(t *testing.T, p *proc) {
	a := signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.6162, Longitude: -122.3321}
	registerFleet(t, a, map[string]droneSpec{
		"only": {Location: pickup, MaxPayloadKg: 5, MaxPackageSize: "Large", RangeKm: 30, CruiseSpeedMps: 20, BatteryPercent: 100},
	})
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("wd-first", pickup, drop, "Small", 1)).Status)
	waitStage(t, a, "wd-first", domain.StageScheduled)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("wd-second", pickup, drop, "Small", 1)).Status)
	later := deliveryRequest("wd-booked", pickup, drop, "Small", 1)
	pickupTime := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	later["pickupTime"] = pickupTime.Format(time.RFC3339)
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests", later).Status)
	waitStage(t, a, "wd-booked", domain.StageScheduled)
	var booked struct {
		DispatchAt *time.Time `json:"dispatchAt"`
	}
	a.call(t, "GET", "/api/deliveries/wd-booked", nil).decode(t, &booked)
	require.NotNil(t, booked.DispatchAt)

	// Operator key only.
	assert.Equal(t, http.StatusForbidden, a.call(t, "GET", "/api/operator/deliveries", nil).Status, "a business key")
	sendingMalformed(t, func() {
		assert.Equal(t, http.StatusUnauthorized, call(t, "GET", p.base+"/api/operator/deliveries", nil).Status, "no key")
	})

	var byID map[string]waitingDoc
	read := time.Now()
	eventually(t, "the second delivery waiting for want of a drone", func() bool {
		byID, _ = waitingByID(t, a, "?stage=waiting")
		return byID["wd-second"].WaitKind == domain.WaitNoDrone
	})
	assert.Equal(t, "no drone available", byID["wd-second"].WaitReason)
	assert.Equal(t, domain.StageCreated, byID["wd-second"].Stage)
	assert.Equal(t, domain.WaitBooked, byID["wd-booked"].WaitKind)
	// Written for the day it is read on (a reading across midnight may
	// name either day).
	assert.Contains(t, []string{"booked: dispatch at " + domain.ClockTime(*booked.DispatchAt, read),
		"booked: dispatch at " + domain.ClockTime(*booked.DispatchAt, time.Now())}, byID["wd-booked"].WaitReason)
	assert.NotContains(t, byID, "wd-first", "a delivery with its drone does not wait")
	assert.Len(t, byID, 2)

	_, newest := waitingByID(t, a, "?limit=1")
	assert.Equal(t, []string{"wd-booked", "wd-second"}, newest, "newest first, one page at a time")
	_, oldest := waitingByID(t, a, "?order=oldest&limit=1")
	assert.Equal(t, []string{"wd-second", "wd-booked"}, oldest, "oldest first")

	sendingMalformed(t, func() {
		for query, field := range map[string]string{
			"?order=sideways": "order", "?limit=0": "limit", "?limit=201": "limit", "?cursor=zz": "cursor",
			"?stage=HeadedToPickup": "stage", "?owner=x": "owner",
		} {
			resp := a.fleet(t, "GET", "/api/operator/deliveries"+query, nil)
			require.Equal(t, http.StatusBadRequest, resp.Status, query)
			assert.Equal(t, field, problemField(t, resp), query)
		}
	})

	// A pause holds the waiting delivery: the listing says so at once.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/pauses/storm", map[string]any{"reason": "thunderstorm"}).Status)
	byID, _ = waitingByID(t, a, "")
	assert.Equal(t, domain.WaitHeld, byID["wd-second"].WaitKind)
	assert.Equal(t, "held: thunderstorm", byID["wd-second"].WaitReason)
	require.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/pauses/storm", nil).Status)

	// A no-fly zone put over the pickup since: the listing names it
	// instead of a want of drones.
	ring := [][2]float64{{-122.3341, 47.6052}, {-122.3301, 47.6052}, {-122.3301, 47.6072}, {-122.3341, 47.6072}, {-122.3341, 47.6052}}
	zone := map[string]any{"name": "crane", "geometry": map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}}}
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/noflyzones/crane", zone).Status)
	byID, _ = waitingByID(t, a, "")
	assert.Equal(t, domain.WaitNoRoute, byID["wd-second"].WaitKind)
	assert.Contains(t, byID["wd-second"].WaitReason, "no route: pickupLocation")
	assert.Contains(t, byID["wd-second"].WaitReason, "crane")
	require.Equal(t, http.StatusNoContent, a.fleet(t, "DELETE", "/api/noflyzones/crane", nil).Status)
	// Without the zone it waits for a drone again; a retry of its dispatch
	// in the last moments shows as "dispatch" until the retry has run.
	eventually(t, "the second delivery waiting for want of a drone again", func() bool {
		byID, _ = waitingByID(t, a, "")
		return byID["wd-second"].WaitKind == domain.WaitNoDrone
	})
}

// TestOperatorListsWaitingDeliveries runs the waiting scenario on the
// embedded backend.
func TestOperatorListsWaitingDeliveries(t *testing.T) {
	t.Parallel()
	waitingScenario(t, startServe(t, t.TempDir()))
}

// TestOperatorListsWaitingDeliveriesOnAzureAdapters runs it on Cosmos DB
// and Service Bus through the local doubles: the listing is a query of the
// owner index across partitions and a point read per delivery.
func TestOperatorListsWaitingDeliveriesOnAzureAdapters(t *testing.T) {
	t.Parallel()
	p := startOnAzure(t)
	waitingScenario(t, p)
	p.stop(t)
}

type deadLetterDoc struct {
	ID         string `json:"id"`
	Queue      string `json:"queue"`
	Reason     string `json:"reason"`
	DeliveryID string `json:"deliveryId"`
}

// deadLetters lists the dead letters through the API.
func deadLetters(t *testing.T, a api) []deadLetterDoc {
	t.Helper()
	resp := a.fleet(t, "GET", "/api/deadletters", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var out struct {
		Items []deadLetterDoc `json:"items"`
	}
	resp.decode(t, &out)
	return out.Items
}

// poisonEarly is the poison of the dead-letter scenario: a message for a
// delivery that does not exist yet, under the id ingest will give that
// delivery's own message, so that, once dead-lettered, the delivery waits
// until the operator replays it.
func poisonEarly(id string) ports.Message {
	body, _ := json.Marshal(wire.Envelope{Operation: wire.OpDelivery, DeliveryID: id, CorrelationID: "c-" + id})
	return ports.Message{ID: wire.MessageID(id, 0, "requested"), Queue: topology.QueueDeliveryRequests, Body: body, CorrelationID: "c-" + id, Operation: "delivery"}
}

// deadLetterScenario runs on any backend whose bus publish sends to: a
// message for a delivery not yet accepted is dead-lettered; the operator
// lists it through the API with its delivery id, the delivery arrives and
// waits, the operator replays the message, the delivery is scheduled, and
// a second replay is 404 and changes nothing.
func deadLetterScenario(t *testing.T, p *proc, publish func(ports.Message)) {
	a := signUp(t, p.base)
	registerFleet(t, a, testFleet(3))
	id := "dl-early"
	publish(poisonEarly(id))
	var dead []deadLetterDoc
	eventually(t, "the message dead-lettered", func() bool {
		dead = deadLetters(t, a)
		return len(dead) == 1
	})
	assert.Equal(t, deadLetterDoc{ID: id + ":requested", Queue: topology.QueueDeliveryRequests, Reason: dead[0].Reason, DeliveryID: id}, dead[0])
	assert.NotEmpty(t, dead[0].Reason)

	assert.Equal(t, http.StatusForbidden, a.call(t, "GET", "/api/deadletters", nil).Status, "a business key")
	assert.Equal(t, http.StatusForbidden, a.call(t, "POST", "/api/deadletters/"+topology.QueueDeliveryRequests+"/"+id+":requested/replay", nil).Status)
	sendingMalformed(t, func() {
		for path, field := range map[string]string{
			"/api/deadletters?queue=nowhere": "queue", "/api/deadletters?limit=0": "limit", "/api/deadletters?limit=x": "limit",
		} {
			resp := a.fleet(t, "GET", path, nil)
			require.Equal(t, http.StatusBadRequest, resp.Status, path)
			assert.Equal(t, field, problemField(t, resp), path)
		}
	})
	resp := a.fleet(t, "POST", "/api/deadletters/nowhere/"+id+":requested/replay", nil)
	require.Equal(t, http.StatusBadRequest, resp.Status)
	assert.Equal(t, "queue", problemField(t, resp))
	assert.Len(t, deadLetters(t, a), 1, "bad input changed nothing")

	// The delivery arrives; its own message is dropped as a duplicate of
	// the dead one, and it waits.
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	require.Equal(t, http.StatusAccepted, a.call(t, "POST", "/api/deliveryrequests",
		deliveryRequest(id, pickup, domain.Location{Latitude: 47.61, Longitude: -122.33}, "Small", 1)).Status)
	byID, _ := waitingByID(t, a, "")
	require.Contains(t, byID, id, "the stuck delivery is listed as waiting")

	resp = a.fleet(t, "POST", "/api/deadletters/"+topology.QueueDeliveryRequests+"/"+url.PathEscape(id+":requested")+"/replay", nil)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var replayed struct {
		ReplayedAs string `json:"replayedAs"`
	}
	resp.decode(t, &replayed)
	assert.True(t, strings.HasPrefix(replayed.ReplayedAs, id+":requested:replay-"), replayed.ReplayedAs)
	d := waitStage(t, a, id, domain.StageScheduled)
	checkSchedule(t, a, d)
	assert.Empty(t, deadLetters(t, a))

	resp = a.fleet(t, "POST", "/api/deadletters/"+topology.QueueDeliveryRequests+"/"+id+":requested/replay", nil)
	assert.Equal(t, http.StatusNotFound, resp.Status, "a second replay finds nothing to replay")
	assert.Equal(t, d.DroneID, getDelivery(t, a, id).DroneID, "and changes nothing")
}

// TestOperatorReplaysDeadLetters runs the dead-letter scenario on the
// embedded backend, publishing the poison into the running binary's file.
func TestOperatorReplaysDeadLetters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir)
	db, err := embedded.Open(filepath.Join(dir, "dronedelivery.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	deadLetterScenario(t, p, func(m ports.Message) { require.NoError(t, db.Bus().Publish(ctxFor(t), m)) })
}

// TestOperatorReplaysDeadLettersOnAzureAdapters runs it on Cosmos DB and
// Service Bus through the local doubles: the listing and the replay read
// the queue's dead-letter subqueue with the azservicebus client.
func TestOperatorReplaysDeadLettersOnAzureAdapters(t *testing.T) {
	t.Parallel()
	p, sb := startOnAzureBus(t)
	client, err := azservicebus.NewClientFromConnectionString(sb.ConnectionString(), servicebus.ClientOptions())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	bus := servicebus.New(client, servicebus.Options{})
	deadLetterScenario(t, p, func(m ports.Message) { require.NoError(t, bus.Publish(ctxFor(t), m)) })
	p.stop(t)
}

// TestHostServesOperatorViews runs the operator endpoints under the
// Functions host's protocol (the host forwards the HTTP request): the
// waiting listing answers, a dead letter is listed and replayed to its
// queue, and the console's event stream answers 501, so the page polls.
// Under the host the queues are the host's to deliver, so the test
// dead-letters the message itself, as the host's Service Bus trigger does
// after its last attempt.
func TestHostServesOperatorViews(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startHost(t, dir)
	a := signUp(t, p.base)
	db, err := embedded.Open(filepath.Join(dir, "dronedelivery.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	bus := db.Bus()
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, poisonEarly("host-early")))
	msgs, err := bus.Receive(ctx, topology.QueueDeliveryRequests, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.NoError(t, bus.DeadLetter(ctx, msgs[0], "MaxDeliveryCountExceeded", "given up"))

	assert.Equal(t, waitingPage{Items: []waitingDoc{}}, waiting(t, a, "?stage=waiting"))
	dead := deadLetters(t, a)
	require.Len(t, dead, 1)
	assert.Equal(t, deadLetterDoc{ID: "host-early:requested", Queue: topology.QueueDeliveryRequests, Reason: "MaxDeliveryCountExceeded", DeliveryID: "host-early"}, dead[0])
	resp := a.fleet(t, "POST", "/api/deadletters/"+topology.QueueDeliveryRequests+"/host-early:requested/replay", nil)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	active, deadCount, err := bus.Depth(ctx, topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, [2]int{1, 0}, [2]int{active, deadCount}, "back on its queue for the host to deliver")
	assert.Equal(t, http.StatusNotFound, a.fleet(t, "POST", "/api/deadletters/"+topology.QueueDeliveryRequests+"/host-early:requested/replay", nil).Status)

	resp = a.fleet(t, "GET", "/api/console/events", nil)
	assert.Equal(t, http.StatusNotImplemented, resp.Status, "no stream under the host")
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
}
