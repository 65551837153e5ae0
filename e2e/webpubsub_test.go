package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/browser"
)

// webPubSubDouble stands in, on loopback, for Azure Web PubSub's data-plane
// REST API (send to group, generate client token), its client endpoint (a
// WebSocket whose token joins the group it was generated for, and which
// receives what is sent to that group as text) and for the App Service
// managed-identity endpoint azidentity gets its token from
// (IDENTITY_ENDPOINT, IDENTITY_HEADER, as the Functions platform sets them).
type webPubSubDouble struct {
	srv *httptest.Server

	mu     sync.Mutex
	sent   []groupMessage
	tokens []string // the query of each generateToken call
	bad    []string // requests the double refused
	// groupOf names the group each client token joins; members holds the
	// connected clients of each group.
	groupOf map[string]string
	members map[string][]*websocket.Conn
}

type groupMessage struct {
	Group string
	Body  []byte
}

const (
	wpsIdentityHeader = "identity-secret-1"
	wpsAccessToken    = "entra-token-for-webpubsub"
	wpsClientToken    = "client-token-1" // the first token generated
)

func startWebPubSubDouble(t *testing.T) *webPubSubDouble {
	t.Helper()
	d := &webPubSubDouble{groupOf: map[string]string{}, members: map[string][]*websocket.Conn{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /msi/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != wpsIdentityHeader || r.URL.Query().Get("resource") != "https://webpubsub.azure.com" {
			d.refuse(w, "token: "+r.URL.String())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"access_token": wpsAccessToken, "token_type": "Bearer",
			"resource": "https://webpubsub.azure.com", "expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)})
	})
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+wpsAccessToken || r.URL.Query().Get("api-version") != "2024-01-01" {
			d.refuse(w, r.Method+" "+r.URL.String())
			return false
		}
		return true
	}
	mux.HandleFunc("POST /api/hubs/tracking/groups/{group}/{action}", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) || r.PathValue("action") != ":send" || r.Header.Get("Content-Type") != "application/json" {
			return
		}
		var body json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			d.refuse(w, "send: not JSON")
			return
		}
		group := r.PathValue("group")
		d.mu.Lock()
		d.sent = append(d.sent, groupMessage{Group: group, Body: body})
		members := append([]*websocket.Conn(nil), d.members[group]...)
		d.mu.Unlock()
		for _, c := range members {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			_ = c.Write(ctx, websocket.MessageText, body) // a client gone is no error of the sender's
			cancel()
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /api/hubs/tracking/{action}", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) || r.PathValue("action") != ":generateToken" {
			return
		}
		d.mu.Lock()
		d.tokens = append(d.tokens, r.URL.RawQuery)
		token := fmt.Sprintf("client-token-%d", len(d.tokens))
		d.groupOf[token] = r.URL.Query().Get("group")
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token":"` + token + `"}`))
	})
	mux.HandleFunc("GET /client/hubs/tracking", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		group, ok := d.groupOf[r.URL.Query().Get("access_token")]
		d.mu.Unlock()
		if !ok {
			d.refuse(w, "client: "+r.URL.String())
			return
		}
		// A browser page connects from the app's origin.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		d.mu.Lock()
		d.members[group] = append(d.members[group], c)
		d.mu.Unlock()
		<-c.CloseRead(context.Background()).Done() // until the client leaves
		d.mu.Lock()
		d.members[group] = slices.DeleteFunc(d.members[group], func(m *websocket.Conn) bool { return m == c })
		d.mu.Unlock()
	})
	d.srv = httptest.NewServer(mux)
	t.Cleanup(d.srv.Close)
	return d
}

func (d *webPubSubDouble) refuse(w http.ResponseWriter, what string) {
	d.mu.Lock()
	d.bad = append(d.bad, what)
	d.mu.Unlock()
	http.Error(w, "refused by the double", http.StatusUnauthorized)
}

// feedsTo returns the feeds sent to group so far.
func (d *webPubSubDouble) feedsTo(t *testing.T, group string) []pushFeed {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []pushFeed
	for _, m := range d.sent {
		if m.Group == group {
			var f pushFeed
			require.NoError(t, json.Unmarshal(m.Body, &f))
			out = append(out, f)
		}
	}
	return out
}

// TestHostPushesThroughWebPubSub runs the binary under the Functions
// host's protocol with WEBPUBSUB_ENDPOINT set: each step that changes what
// the tracking page shows (the ETA step, each telemetry report) sends the
// feed to the delivery's Web PubSub group with a managed-identity token,
// negotiate hands the page a client URL from generateToken for that group
// alone, the page's CSP lets it connect there, and the event stream, which
// the host cannot hold, answers 501.
func TestHostPushesThroughWebPubSub(t *testing.T) {
	t.Parallel()
	wps := startWebPubSubDouble(t)
	dir := t.TempDir()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dir,
		"WEBPUBSUB_ENDPOINT=" + wps.srv.URL, "WEBPUBSUB_CLIENT_ID=00000000-0000-0000-0000-0000000000aa",
		"IDENTITY_ENDPOINT=" + wps.srv.URL + "/msi/token", "IDENTITY_HEADER=" + wpsIdentityHeader})
	waitReady(t, p)
	a := signUp(t, p.base)
	home := domain.Location{Latitude: 47.600, Longitude: -122.330}
	pickup := domain.Location{Latitude: 47.610, Longitude: -122.330}
	drop := domain.Location{Latitude: 47.625, Longitude: -122.320}
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/wps-drone", droneSpec{
		Location: home, MaxPayloadKg: 5, MaxPackageSize: "Medium", RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100,
	}).Status)
	resp := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest("wps-1", pickup, drop, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var acc struct {
		TrackingID string `json:"trackingId"`
	}
	resp.decode(t, &acc)
	group := "delivery.wps-1"

	// Play the host for the chain's queue steps.
	db := openEmbedded(t, dir)
	bus := db.Bus()
	deliver := func(fn, queue string) {
		t.Helper()
		msgs, err := bus.Receive(ctxFor(t), queue, 10)
		require.NoError(t, err, queue)
		for i, m := range msgs {
			status, _ := invoke(t, p, fn, fmt.Sprintf("inv-%s-%d-%d", fn, m.SequenceNumber, i), queueInvocation(fn, m, 1))
			require.Equal(t, http.StatusOK, status, fn)
			require.NoError(t, bus.Complete(ctxFor(t), m))
		}
	}
	deliver("ScheduleDrone", topology.QueueDeliveryRequests)
	deliver("UpdatePackage", topology.QueueDroneScheduled)
	deliver("ComputeEta", topology.QueuePackageUpdated)
	feeds := wps.feedsTo(t, group)
	require.NotEmpty(t, feeds, "the ETA step pushed the scheduled delivery (refused: %v)", wps.bad)
	assert.Equal(t, domain.StageScheduled, feeds[len(feeds)-1].Stage)

	track := p.base + "/api/track/" + acc.TrackingID
	var neg struct {
		Transport, URL string
	}
	call(t, "GET", track+"/negotiate", nil).decode(t, &neg)
	assert.Equal(t, "webpubsub", neg.Transport)
	wsOrigin := "ws://" + strings.TrimPrefix(wps.srv.URL, "http://")
	assert.Equal(t, wsOrigin+"/client/hubs/tracking?access_token="+wpsClientToken, neg.URL)
	wps.mu.Lock()
	require.Len(t, wps.tokens, 1)
	assert.Contains(t, wps.tokens[0], "group="+group)
	assert.Contains(t, wps.tokens[0], "minutesToExpire=60")
	assert.NotContains(t, wps.tokens[0], "role=", "the client may only receive")
	wps.mu.Unlock()
	page := call(t, "GET", track, nil)
	require.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "connect-src 'self' "+wsOrigin+";")
	assert.Equal(t, http.StatusNotImplemented, call(t, "GET", track+"/events", nil).Status)

	// Each telemetry report is pushed with the drone where it put it.
	clock := time.Now().UTC()
	route := append(flightPath(home, pickup, 3)[1:], flightPath(pickup, drop, 3)[1:]...)
	for i, loc := range route {
		clock = clock.Add(15 * time.Second)
		r := a.fleet(t, "POST", "/api/drones/wps-drone/telemetry", map[string]any{
			"location": loc, "batteryPercent": 100 - i, "timestamp": clock.Format(time.RFC3339Nano)})
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		before := len(wps.feedsTo(t, group))
		deliver("TrackDrone", topology.QueueDroneTelemetry)
		feeds := wps.feedsTo(t, group)
		require.Len(t, feeds, before+1, "report %d pushed once", i)
		last := feeds[len(feeds)-1]
		require.NotNil(t, last.Drone, "report %d", i)
		assert.Equal(t, loc, last.Drone.Location, "report %d", i)
	}
	feeds = wps.feedsTo(t, group)
	assert.Equal(t, domain.StageCompleted, feeds[len(feeds)-1].Stage)
	wps.mu.Lock()
	assert.Empty(t, wps.bad, "every call to the double was authorized")
	wps.mu.Unlock()
}

// TestHostPushesConsoleThroughWebPubSub runs the binary under the Functions
// host's protocol with WEBPUBSUB_ENDPOINT set: the console's negotiate, with
// the operator key only, hands it a client URL for the operators group
// alone, the console's CSP lets it connect there, and a telemetry report
// processed by the host's queue trigger reaches a WebSocket client joined
// to that group as a "changed" message.
func TestHostPushesConsoleThroughWebPubSub(t *testing.T) {
	t.Parallel()
	wps := startWebPubSubDouble(t)
	dir := t.TempDir()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dir,
		"WEBPUBSUB_ENDPOINT=" + wps.srv.URL, "WEBPUBSUB_CLIENT_ID=00000000-0000-0000-0000-0000000000aa",
		"IDENTITY_ENDPOINT=" + wps.srv.URL + "/msi/token", "IDENTITY_HEADER=" + wpsIdentityHeader})
	waitReady(t, p)
	a := signUp(t, p.base)

	var resp *response
	sendingMalformed(t, func() { resp = call(t, "GET", p.base+"/api/console/negotiate", nil) })
	assert.Equal(t, http.StatusUnauthorized, resp.Status, "no key")
	assert.Equal(t, http.StatusForbidden, a.call(t, "GET", "/api/console/negotiate", nil).Status)
	resp = a.fleet(t, "GET", "/api/console/negotiate", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var neg struct {
		Transport, URL string
	}
	resp.decode(t, &neg)
	assert.Equal(t, "webpubsub", neg.Transport)
	wsOrigin := "ws://" + strings.TrimPrefix(wps.srv.URL, "http://")
	assert.Equal(t, wsOrigin+"/client/hubs/tracking?access_token="+wpsClientToken, neg.URL)
	wps.mu.Lock()
	require.Len(t, wps.tokens, 1)
	assert.Contains(t, wps.tokens[0], "group=operators")
	assert.NotContains(t, wps.tokens[0], "role=", "the client may only receive")
	wps.mu.Unlock()
	page := call(t, "GET", p.base+"/api/console", nil)
	require.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "connect-src 'self' "+wsOrigin+";")

	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	ws, _, err := websocket.Dial(ctx, neg.URL, nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	got := make(chan []byte, 16)
	go func() {
		for {
			_, m, err := ws.Read(ctx)
			if err != nil {
				return
			}
			got <- m
		}
	}()
	eventually(t, "the console's client to join the operators group", func() bool {
		wps.mu.Lock()
		defer wps.mu.Unlock()
		return len(wps.members["operators"]) == 1
	})

	// The drone's PUT is not announced; the report is the first change this
	// process tells the consoles of, so the throttle lets it through.
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/console-drone", droneSpec{
		Location: domain.Location{Latitude: 47.6, Longitude: -122.33}, MaxPayloadKg: 5, MaxPackageSize: "Medium",
		RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100,
	}).Status)
	r := a.fleet(t, "POST", "/api/drones/console-drone/telemetry", map[string]any{
		"location": domain.Location{Latitude: 47.601, Longitude: -122.331}, "batteryPercent": 97,
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	bus := openEmbedded(t, dir).Bus()
	msgs, err := bus.Receive(ctxFor(t), topology.QueueDroneTelemetry, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	status, _ := invoke(t, p, "TrackDrone", "inv-console-1", queueInvocation("TrackDrone", msgs[0], 1))
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, bus.Complete(ctxFor(t), msgs[0]))

	var m []byte
	eventually(t, "a message to the console's WebSocket", func() bool {
		select {
		case m = <-got:
			return true
		default:
			return false
		}
	})
	assert.JSONEq(t, `{"type":"changed"}`, string(m))
	wps.mu.Lock()
	assert.Empty(t, wps.bad, "every call to the double was authorized")
	wps.mu.Unlock()
}

// TestHostConsoleInBrowserThroughWebPubSub opens the console in headless
// Chromium under the Functions host's protocol with Web PubSub: the page
// negotiates, holds a WebSocket to the double's client endpoint, and a
// telemetry report processed by the host's queue trigger rings it, after
// which it reads the fleet and draws the drone where the report put it.
// The page's poll interval is set far beyond the test's waits, so the
// update comes from the push.
func TestHostConsoleInBrowserThroughWebPubSub(t *testing.T) {
	t.Parallel()
	wps := startWebPubSubDouble(t)
	dir := t.TempDir()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dir,
		"WEBPUBSUB_ENDPOINT=" + wps.srv.URL, "WEBPUBSUB_CLIENT_ID=00000000-0000-0000-0000-0000000000aa",
		"IDENTITY_ENDPOINT=" + wps.srv.URL + "/msi/token", "IDENTITY_HEADER=" + wpsIdentityHeader})
	waitReady(t, p)
	a := signUp(t, p.base)
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/host-console", droneSpec{
		Location: domain.Location{Latitude: 47.6, Longitude: -122.33}, MaxPayloadKg: 5, MaxPackageSize: "Small",
		RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100}).Status)

	browserTurn.Lock()
	defer browserTurn.Unlock()
	page := browser.OpenPage(t, p.base+"/api/console?interval=3600000", 1280, 900, patience)
	page.Wait(t, "the page asks for the key", `document.body.dataset.state === 'locked'`)
	page.Fill(t, "#key", e2eOperatorKey)
	page.Click(t, "#connect")
	page.Wait(t, "the page on Web PubSub with the drone drawn", `document.body.dataset.state === 'ok' &&
		document.body.dataset.transport === 'push' && document.querySelectorAll('#map g.drone').length === 1`)

	moved := domain.Location{Latitude: 47.6075, Longitude: -122.33}
	postReport(t, a, "host-console", moved, 92, time.Now().UTC())
	bus := openEmbedded(t, dir).Bus()
	msgs, err := bus.Receive(ctxFor(t), topology.QueueDroneTelemetry, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	status, _ := invoke(t, p, "TrackDrone", "inv-host-console-1", queueInvocation("TrackDrone", msgs[0], 1))
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, bus.Complete(ctxFor(t), msgs[0]))
	page.Wait(t, "the pushed change drawn", fmt.Sprintf(`(() => {
		const g = document.querySelector('#map g.drone[data-id="host-console"]');
		return Number(document.body.dataset.pushes) >= 1 && g &&
			Number(g.dataset.lat) === %v && Number(g.dataset.lon) === %v;
	})()`, moved.Latitude, moved.Longitude))
	assert.Empty(t, page.Errors(t), "no errors in the page")
	wps.mu.Lock()
	assert.Empty(t, wps.bad, "every call to the double was authorized")
	wps.mu.Unlock()
}
