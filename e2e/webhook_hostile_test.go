package e2e

// Webhooks against hostile tenants (issue 16, findings 1, 6, 9 and 11):
// a webhook reaches only public addresses unless WEBHOOK_ALLOW_PRIVATE is
// on, follows no redirect, ends at once when its address is refused, never
// shows its URL's path or query in a log or a dead-letter description, and
// one account's slow or dead endpoint delays only that account.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// hookSecret stands for a token a receiver puts in its webhook URL.
const hookSecret = "hooktoken-5b0e9c1f7a"

// hookListener is a business's webhook endpoint on loopback. It answers
// status(n) to its n-th request (200 when status is nil); with hold set,
// each request waits until the test ends or the sender gives up.
type hookListener struct {
	*httptest.Server
	status func(n int) int
	hold   bool

	mu       sync.Mutex
	answered map[int][]string // notification ids by the status they got
	requests int
	held     int // requests waiting now
	maxHeld  int
	gaveUp   int // held requests the sender abandoned
	release  chan struct{}
}

func listenForHooks(t *testing.T, hold bool, status func(n int) int) *hookListener {
	t.Helper()
	l := &hookListener{status: status, hold: hold, answered: map[int][]string{}, release: make(chan struct{})}
	l.Server = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(func() { close(l.release); l.Close() })
	return l
}

func (l *hookListener) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.requests++
	n := l.requests
	if l.hold {
		l.held++
		l.maxHeld = max(l.maxHeld, l.held)
	}
	l.mu.Unlock()
	if l.hold {
		select {
		case <-l.release:
		case <-r.Context().Done():
			l.mu.Lock()
			l.gaveUp++
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.held--
		l.mu.Unlock()
		return
	}
	status := http.StatusOK
	if l.status != nil {
		status = l.status(n)
	}
	if status >= 300 && status < 400 {
		w.Header().Set("Location", r.URL.Query().Get("next"))
	}
	l.mu.Lock()
	l.answered[status] = append(l.answered[status], r.Header.Get(webhook.HeaderNotificationID))
	l.mu.Unlock()
	w.WriteHeader(status)
}

// snapshot returns the counters under the lock.
func (l *hookListener) snapshot() (requests, held, maxHeld, gaveUp int, ok []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, l.held, l.maxHeld, l.gaveUp, append([]string(nil), l.answered[http.StatusOK]...)
}

// signUpWithHook registers a business whose webhook is url.
func signUpWithHook(t *testing.T, base, url string) api {
	t.Helper()
	resp := call(t, "POST", base+"/api/accounts", map[string]any{"name": "Hooked", "contactEmail": "ops@hooked.example", "webhookUrl": url})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var out struct{ APIKey string }
	resp.decode(t, &out)
	return api{base: base, key: out.APIKey}
}

var (
	hookPickup = domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	hookDrop   = domain.Location{Latitude: 47.61, Longitude: -122.33}
)

// submit asks for deliveries prefix-0 … prefix-(n-1); each sends one
// notification once Scheduled, id "<delivery>:n1".
func submit(t *testing.T, a api, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		resp := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest(id, hookPickup, hookDrop, "Small", 1))
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
		ids = append(ids, id+":n1")
	}
	return ids
}

// logLines counts p's log lines that contain every one of parts.
func logLines(p *proc, parts ...string) int {
	n := 0
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		all := true
		for _, s := range parts {
			all = all && strings.Contains(line, s)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// TestWebhookRedirectsAreNotFollowed: with private targets allowed (as in
// development), a webhook reaches a loopback listener; a listener that
// answers 307 (which would re-POST the body) or 302 (which would become a
// GET of a metadata path) fails the attempt, and the address it names is
// never reached.
func TestWebhookRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"WEBHOOK_ALLOW_PRIVATE=true"})
	registerFleet(t, signUp(t, p.base), testFleet(4))
	target := listenForHooks(t, false, nil)
	good := listenForHooks(t, false, nil)
	r307 := listenForHooks(t, false, func(int) int { return http.StatusTemporaryRedirect })
	r302 := listenForHooks(t, false, func(int) int { return http.StatusFound })

	submit(t, signUpWithHook(t, p.base, good.URL+"/hook"), "good", 1)
	submit(t, signUpWithHook(t, p.base, r307.URL+"/hook?next="+target.URL+"/hook"), "r307", 1)
	submit(t, signUpWithHook(t, p.base, r302.URL+"/hook?next="+target.URL+"/latest/meta-data/"), "r302", 1)

	eventually(t, "the webhook to reach the loopback listener", func() bool {
		_, _, _, _, ok := good.snapshot()
		return len(ok) == 1
	})
	// A redirect is followed, if at all, within the attempt that got it:
	// once both attempts are logged as failed, the target would have had
	// its requests.
	for _, n := range []string{"r307-0:n1", "r302-0:n1"} {
		eventually(t, n+"'s redirect to fail its attempt", func() bool {
			return logLines(p, "webhook failed; retrying later", n, "redirects are not followed") > 0
		})
	}
	requests, _, _, _, _ := target.snapshot()
	assert.Zero(t, requests, "the redirects' target was never reached")
	r307Requests, _, _, _, _ := r307.snapshot()
	assert.GreaterOrEqual(t, r307Requests, 1)
}

// TestWebhookToAPrivateAddressIsRefusedWhenDialled: URLs stored while
// WEBHOOK_ALLOW_PRIVATE was on (one at a loopback listener, one at the
// service's own API) are refused when the service dials them once it is
// off: the listener gets nothing, the first notification to each URL is
// dead-lettered on its first attempt (no retries to probe with) and the
// others to it are logged and acknowledged, so that the dead-letter queue
// does not fill with one message per notice, the service's own
// failed-authentication bucket is untouched so its clients are still
// served (finding 9), and the URLs' secret path and query appear in no log
// line and no dead-letter description (finding 11).
func TestWebhookToAPrivateAddressIsRefusedWhenDialled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	hooks := listenForHooks(t, false, nil)

	dev := startServeEnv(t, dir, []string{"WEBHOOK_ALLOW_PRIVATE=true"}, "-addr", addr)
	registerFleet(t, signUp(t, dev.base), testFleet(30))
	toListener := signUpWithHook(t, dev.base, hooks.URL+"/hooks/"+hookSecret+"?token="+hookSecret)
	toItself := signUpWithHook(t, dev.base, dev.base+"/api/deliveryrequests?token="+hookSecret)
	submit(t, toListener, "dev", 1)
	eventually(t, "the webhook to arrive while private targets are allowed", func() bool {
		_, _, _, _, ok := hooks.snapshot()
		return len(ok) == 1
	})
	dev.stop(t)

	// The same data, private targets refused, and the failed-authentication
	// limit on (its default allowance: 20 at once).
	p := startServeEnv(t, dir, []string{"RATE_LIMIT=1000/s"}, "-addr", addr)
	const selfCount = 25
	submit(t, toItself, "self", selfCount)
	submit(t, toListener, "prod", 1)

	db := openEmbedded(t, dir)
	bus := db.Bus()
	eventually(t, "the first refused notification to each URL dead-lettered, the others acknowledged", func() bool {
		_, dead, err := bus.Depth(ctxFor(t), topology.QueueNotifications)
		require.NoError(t, err)
		return dead == 2 && logLines(p, "acknowledged, as a notice to it was dead-lettered lately") == selfCount-1
	})
	_, dead, err := bus.Depth(ctxFor(t), topology.QueueNotifications)
	require.NoError(t, err)
	require.Equal(t, 2, dead)
	requests, _, _, _, _ := hooks.snapshot()
	assert.Equal(t, 1, requests, "nothing reached the listener once private targets were refused")

	msgs, err := bus.Receive(ctxFor(t), ports.DeadLetterQueue(topology.QueueNotifications), selfCount+1)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		assert.Equal(t, 2, m.DeliveryCount, "%s: dead-lettered on its first delivery", m.ID)
		var env wire.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		assert.Zero(t, env.Attempt, "%s: not retried", m.ID)
		assert.Contains(t, m.DeadLetterDescription, "loopback", m.ID)
		assert.NotContains(t, m.DeadLetterDescription, hookSecret, m.ID)
	}

	// Finding 9: 26 webhooks at the service itself without a key would
	// have spent its address's failed-authentication allowance, and its
	// clients on that address would get 429.
	resp := toItself.call(t, "GET", "/api/deliveries", nil)
	assert.Equal(t, http.StatusOK, resp.Status, string(resp.Body))

	for _, proc := range []*proc{dev, p} {
		assert.NotContains(t, proc.logs.String(), hookSecret, "a webhook URL's path and query are never logged")
	}
	assert.Positive(t, logLines(p, "message can never succeed", "not sent"), "the refusal is logged, redacted")
}

// TestSlowWebhookDelaysOnlyItsAccount: one account's endpoint never
// answers; another's notices are all delivered while the slow endpoint
// still holds its first requests, which it holds at most
// WEBHOOK_CONCURRENCY at a time, though the slow account's notices
// outnumber the notifications queue's workers.
func TestSlowWebhookDelaysOnlyItsAccount(t *testing.T) {
	t.Parallel()
	// An attempt outlasts the test, so a held request that ends was
	// given up for another reason than its timeout.
	p := startServeEnv(t, t.TempDir(), []string{"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_TIMEOUT=10m", "WEBHOOK_CONCURRENCY=2"}, "-workers", "4")
	registerFleet(t, signUp(t, p.base), testFleet(16))
	slow := listenForHooks(t, true, nil)
	fast := listenForHooks(t, false, nil)
	slowAcct := signUpWithHook(t, p.base, slow.URL+"/hook")
	fastAcct := signUpWithHook(t, p.base, fast.URL+"/hook")

	slowIDs := submit(t, slowAcct, "slow", 8)
	eventually(t, "the slow account's notices to take their share and wait their turn", func() bool {
		_, held, _, _, _ := slow.snapshot()
		waiting := 0
		for _, id := range slowIDs {
			if logLines(p, "webhook waits its turn", id) > 0 {
				waiting++
			}
		}
		return held == 2 && waiting == len(slowIDs)-2
	})

	fastIDs := submit(t, fastAcct, "fast", 4)
	eventually(t, "every notice of the other account to arrive", func() bool {
		_, _, _, _, ok := fast.snapshot()
		return len(ok) >= len(fastIDs)
	})
	_, _, _, _, ok := fast.snapshot()
	assert.ElementsMatch(t, fastIDs, dedupe(ok))
	requests, held, maxHeld, gaveUp, _ := slow.snapshot()
	assert.Equal(t, 2, held, "the slow endpoint still holds its first requests")
	assert.Equal(t, 2, requests, "no more of the slow account's notices were sent meanwhile")
	assert.Equal(t, 2, maxHeld, "never more than WEBHOOK_CONCURRENCY in flight for one account")
	assert.Zero(t, gaveUp)
}

// slowHooks answers every webhook after delay, and notes how many of its
// requests were in flight as each arrived.
type slowHooks struct {
	*httptest.Server
	delay    time.Duration
	mu       sync.Mutex
	inFlight int
	arrivals []int          // in flight as each request arrived, itself included
	answered map[string]int // answers by path
}

func listenSlowly(t *testing.T, delay time.Duration) *slowHooks {
	t.Helper()
	s := &slowHooks{delay: delay, answered: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.inFlight++
		s.arrivals = append(s.arrivals, s.inFlight)
		s.mu.Unlock()
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.inFlight--
		s.answered[r.URL.Path]++
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

// snapshot returns the requests arrived so far, how many are in flight,
// and how many paths have been answered.
func (s *slowHooks) snapshot() (arrived, inFlight, paths int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals), s.inFlight, len(s.answered)
}

// mostInFlightSince is the most requests in flight as any request after
// the first n arrived.
func (s *slowHooks) mostInFlightSince(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	most := 0
	for _, k := range s.arrivals[n:] {
		most = max(most, k)
	}
	return most
}

// TestSlowEndpointsTogetherLeaveWorkersToOthers: five accounts whose
// endpoints each answer in 1.5 s (slow, within the timeout) have at most
// WEBHOOK_SLOW_CONCURRENCY webhooks in flight between them, though each
// would have one of its own and they outnumber the notification workers;
// a prompt account's notices go out meanwhile.
func TestSlowEndpointsTogetherLeaveWorkersToOthers(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, t.TempDir(), []string{"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_TIMEOUT=5s", "WEBHOOK_SLOW_CONCURRENCY=2"}, "-workers", "4")
	registerFleet(t, signUp(t, p.base), testFleet(32))
	slow := listenSlowly(t, 1500*time.Millisecond)
	fast := listenForHooks(t, false, nil)
	var slowAccts []api
	for i := range 5 {
		slowAccts = append(slowAccts, signUpWithHook(t, p.base, fmt.Sprintf("%s/hook/%d", slow.URL, i)))
	}
	fastAcct := signUpWithHook(t, p.base, fast.URL+"/hook")

	// Each slow account's first notice, answered slowly, marks its
	// endpoint slow.
	for i, a := range slowAccts {
		submit(t, a, fmt.Sprintf("first-%d", i), 1)
	}
	eventually(t, "every slow endpoint to answer a notice, and none to be in flight", func() bool {
		_, inFlight, paths := slow.snapshot()
		return paths == len(slowAccts) && inFlight == 0
	})
	mark, _, _ := slow.snapshot()

	for i, a := range slowAccts {
		submit(t, a, fmt.Sprintf("more-%d", i), 3)
	}
	fastIDs := submit(t, fastAcct, "fast", 4)
	eventually(t, "every notice of the prompt account, and more to the slow endpoints", func() bool {
		_, _, _, _, ok := fast.snapshot()
		arrived, _, _ := slow.snapshot()
		return len(dedupe(ok)) == len(fastIDs) && arrived >= mark+4
	})
	_, _, _, _, ok := fast.snapshot()
	assert.ElementsMatch(t, fastIDs, dedupe(ok))
	assert.LessOrEqual(t, slow.mostInFlightSince(mark), 2, "never more than WEBHOOK_SLOW_CONCURRENCY in flight to the slow endpoints")
}

// TestDeadWebhookOpensItsCircuit: an endpoint that answers 503 to
// everything gets WEBHOOK_BREAKER_FAILURES attempts; then its account's
// circuit opens and the account's notices fail fast without reaching it,
// each waiting for the cool-down, while nothing is dropped: every notice
// is still queued, none dead-lettered.
func TestDeadWebhookOpensItsCircuit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// One send at a time makes the count of failures that reach the
	// endpoint exact; a short timeout makes the others' turns come soon.
	p := startServeEnv(t, dir, []string{"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_CONCURRENCY=1", "WEBHOOK_TIMEOUT=1s",
		"WEBHOOK_BREAKER_FAILURES=3", "WEBHOOK_BREAKER_COOLDOWN=1h"})
	registerFleet(t, signUp(t, p.base), testFleet(8))
	dead := listenForHooks(t, false, func(int) int { return http.StatusServiceUnavailable })
	ids := submit(t, signUpWithHook(t, p.base, dead.URL+"/hook/"+hookSecret), "dead", 6)

	eventually(t, "every notice to meet the open circuit", func() bool {
		for _, id := range ids {
			if logLines(p, "webhook failed; retrying later", id, "circuit is open") == 0 {
				return false
			}
		}
		return true
	})
	requests, _, _, _, _ := dead.snapshot()
	assert.Equal(t, 3, requests, "only WEBHOOK_BREAKER_FAILURES attempts reached the dead endpoint")
	assert.Equal(t, 1, logLines(p, "webhook circuit open"), "the circuit opened once")

	db := openEmbedded(t, dir)
	active, deadLettered, err := db.Bus().Depth(ctxFor(t), topology.QueueNotifications)
	require.NoError(t, err)
	assert.Equal(t, [2]int{len(ids), 0}, [2]int{active, deadLettered}, "every notice waits for the cool-down; none is lost")
	assert.NotContains(t, p.logs.String(), hookSecret)
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
