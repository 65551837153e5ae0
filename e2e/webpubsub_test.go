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

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/topology"
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

// startHostOnWebPubSub starts a Web PubSub double and the binary under the
// Functions host's protocol on the embedded store, sending to the double
// with a managed-identity token; it returns the double, the instance once
// ready and the store's bus, for the test to play the host's queue
// triggers.
func startHostOnWebPubSub(t *testing.T) (*webPubSubDouble, *proc, *embedded.Bus) {
	t.Helper()
	d := startWebPubSubDouble(t)
	dir := t.TempDir()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dir,
		"WEBPUBSUB_ENDPOINT=" + d.srv.URL, "WEBPUBSUB_CLIENT_ID=00000000-0000-0000-0000-0000000000aa",
		"IDENTITY_ENDPOINT=" + d.srv.URL + "/msi/token", "IDENTITY_HEADER=" + wpsIdentityHeader})
	waitReady(t, p)
	return d, p, openEmbedded(t, dir).Bus()
}

// wsOrigin is the origin of the double's client endpoint.
func (d *webPubSubDouble) wsOrigin() string {
	return "ws://" + strings.TrimPrefix(d.srv.URL, "http://")
}

// clientURL is the client URL that hands out the first token generated.
func (d *webPubSubDouble) clientURL() string {
	return d.wsOrigin() + "/client/hubs/tracking?access_token=" + wpsClientToken
}

// checkNegotiated holds a negotiate answer and the page that makes it to
// Web PubSub: the answer names the transport and a client URL with the one
// token generated, which may not send; the page's CSP lets it connect to
// the double. It returns the query the token was generated with.
func (d *webPubSubDouble) checkNegotiated(t *testing.T, negotiate, page *response) string {
	t.Helper()
	require.Equal(t, http.StatusOK, negotiate.Status, string(negotiate.Body))
	var neg struct {
		Transport, URL string
	}
	negotiate.decode(t, &neg)
	assert.Equal(t, "webpubsub", neg.Transport)
	assert.Equal(t, d.clientURL(), neg.URL)
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Len(t, d.tokens, 1)
	assert.NotContains(t, d.tokens[0], "role=", "the client may only receive")
	require.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "connect-src 'self' "+d.wsOrigin()+";")
	return d.tokens[0]
}

// checkAllAuthorized asserts that the double refused no call.
func (d *webPubSubDouble) checkAllAuthorized(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	assert.Empty(t, d.bad, "every call to the double was authorized")
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
	wps, p, bus := startHostOnWebPubSub(t)
	a := signUp(t, p.base)
	trackingID := northFlight.book(t, a, "wps-drone", "wps-1")
	group := "delivery.wps-1"

	// Play the host for the chain's queue steps.
	runQueued(t, p, bus, "ScheduleDrone", topology.QueueDeliveryRequests)
	runQueued(t, p, bus, "UpdatePackage", topology.QueueDroneScheduled)
	runQueued(t, p, bus, "ComputeEta", topology.QueuePackageUpdated)
	feeds := wps.feedsTo(t, group)
	require.NotEmpty(t, feeds, "the ETA step pushed the scheduled delivery (refused: %v)", wps.bad)
	assert.Equal(t, domain.StageScheduled, feeds[len(feeds)-1].Stage)

	track := p.base + "/api/track/" + trackingID
	token := wps.checkNegotiated(t, call(t, "GET", track+"/negotiate", nil), call(t, "GET", track, nil))
	assert.Contains(t, token, "group="+group)
	assert.Contains(t, token, "minutesToExpire=60")
	assert.Equal(t, http.StatusNotImplemented, call(t, "GET", track+"/events", nil).Status)

	// Each telemetry report is pushed with the drone where it put it.
	clock := time.Now().UTC()
	route := northFlight.route(3, 3)[1:]
	for i, loc := range route {
		clock = clock.Add(15 * time.Second)
		postReport(t, a, "wps-drone", loc, float64(100-i), clock)
		before := len(wps.feedsTo(t, group))
		runQueued(t, p, bus, "TrackDrone", topology.QueueDroneTelemetry)
		feeds := wps.feedsTo(t, group)
		require.Len(t, feeds, before+1, "report %d pushed once", i)
		last := feeds[len(feeds)-1]
		require.NotNil(t, last.Drone, "report %d", i)
		assert.Equal(t, loc, last.Drone.Location, "report %d", i)
	}
	feeds = wps.feedsTo(t, group)
	assert.Equal(t, domain.StageCompleted, feeds[len(feeds)-1].Stage)
	wps.checkAllAuthorized(t)
}

// TestHostPushesConsoleThroughWebPubSub runs the binary under the Functions
// host's protocol with WEBPUBSUB_ENDPOINT set: the console's negotiate, with
// the operator key only, hands it a client URL for the operators group
// alone, the console's CSP lets it connect there, and a telemetry report
// processed by the host's queue trigger reaches a WebSocket client joined
// to that group as a "changed" message.
func TestHostPushesConsoleThroughWebPubSub(t *testing.T) {
	t.Parallel()
	wps, p, bus := startHostOnWebPubSub(t)
	a := signUp(t, p.base)

	var resp *response
	sendingMalformed(t, func() { resp = call(t, "GET", p.base+"/api/console/negotiate", nil) })
	assert.Equal(t, http.StatusUnauthorized, resp.Status, "no key")
	assert.Equal(t, http.StatusForbidden, a.call(t, "GET", "/api/console/negotiate", nil).Status)
	token := wps.checkNegotiated(t, a.fleet(t, "GET", "/api/console/negotiate", nil), call(t, "GET", p.base+"/api/console", nil))
	assert.Contains(t, token, "group=operators")

	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wps.clientURL(), nil)
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
	putDrone(t, a, "console-drone", domain.Location{Latitude: 47.6, Longitude: -122.33}, "Medium")
	postReport(t, a, "console-drone", domain.Location{Latitude: 47.601, Longitude: -122.331}, 97, time.Now().UTC())
	require.Equal(t, 1, runQueued(t, p, bus, "TrackDrone", topology.QueueDroneTelemetry))

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
	wps.checkAllAuthorized(t)
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
	wps, p, bus := startHostOnWebPubSub(t)
	a := signUp(t, p.base)
	putDrone(t, a, "host-console", domain.Location{Latitude: 47.6, Longitude: -122.33}, "Small")

	page := openConsole(t, p.base, "interval=3600000", 900)
	page.Fill(t, "#key", e2eOperatorKey)
	page.Click(t, "#connect")
	page.Wait(t, "the page on Web PubSub with the drone drawn", `document.body.dataset.state === 'ok' &&
		document.body.dataset.transport === 'push' && document.querySelectorAll('#map g.drone').length === 1`)

	moved := domain.Location{Latitude: 47.6075, Longitude: -122.33}
	postReport(t, a, "host-console", moved, 92, time.Now().UTC())
	require.Equal(t, 1, runQueued(t, p, bus, "TrackDrone", topology.QueueDroneTelemetry))
	page.Wait(t, "the pushed change drawn", fmt.Sprintf(`(() => {
		const g = document.querySelector('#map g.drone[data-id="host-console"]');
		return Number(document.body.dataset.pushes) >= 1 && g &&
			Number(g.dataset.lat) === %v && Number(g.dataset.lon) === %v;
	})()`, moved.Latitude, moved.Longitude))
	assert.Empty(t, page.Errors(t), "no errors in the page")
	wps.checkAllAuthorized(t)
}
