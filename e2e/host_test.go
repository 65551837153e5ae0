package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// jsonString double-encodes a scalar the way the host sends Service Bus
// trigger metadata: a JSON string holding the value's JSON.
// hostChain is the chain's queue steps in order: the function the host
// invokes for each queue.
var hostChain = []struct{ fn, queue string }{
	{"ScheduleDrone", topology.QueueDeliveryRequests},
	{"UpdatePackage", topology.QueueDroneScheduled},
	{"ComputeEta", topology.QueuePackageUpdated},
	{"SendNotification", topology.QueueNotifications},
}

// receiveOnly takes the one message waiting on queue.
func receiveOnly(t *testing.T, bus ports.Bus, queue string) []*ports.Delivered {
	t.Helper()
	msgs, err := bus.Receive(ctxFor(t), queue, 10)
	require.NoError(t, err, queue)
	require.Len(t, msgs, 1, queue)
	return msgs
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// httpInvocation is what the host POSTs for an HTTP function when it does
// not forward the request; key, when given, is the caller's bearer token.
func httpInvocation(method, url, key string, params map[string]string, body string) map[string]any {
	headers := map[string][]string{"Content-Type": {"application/json"}, "User-Agent": {"curl/8.0"}}
	if key != "" {
		headers["Authorization"] = []string{"Bearer " + key}
	}
	return map[string]any{
		"Data": map[string]any{
			"req": map[string]any{
				"Url":        url,
				"Method":     method,
				"Query":      map[string]any{},
				"Headers":    headers,
				"Params":     params,
				"Identities": []any{},
				"Body":       body,
			},
		},
		"Metadata": map[string]any{
			"Query":   map[string]any{},
			"Headers": map[string]any{"Content-Type": "application/json"},
			"sys":     map[string]any{"MethodName": "IngestDelivery", "UtcNow": time.Now().UTC().Format(time.RFC3339Nano), "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"},
		},
	}
}

// runQueued plays the host's queue trigger for fn: every message waiting
// on queue is handed to the instance, which must take it, then completed.
// It returns how many there were.
func runQueued(t *testing.T, p *proc, bus *embedded.Bus, fn, queue string) int {
	t.Helper()
	msgs, err := bus.Receive(ctxFor(t), queue, 10)
	require.NoError(t, err, queue)
	for i, m := range msgs {
		status, _ := invoke(t, p, fn, fmt.Sprintf("inv-%s-%d-%d", fn, m.SequenceNumber, i), queueInvocation(fn, m, 1))
		require.Equal(t, http.StatusOK, status, fn)
		require.NoError(t, bus.Complete(ctxFor(t), m))
	}
	return len(msgs)
}

// queueInvocation is what the host POSTs for a serviceBusTrigger with
// dataType binary, in the shape shared/functionapp/host/hostshape_test.go
// traces to the host's source: the body in base64, string and number
// metadata double-encoded, times re-parsed without a fraction (and the *Utc
// ones without a zone), null values left out, the action objects present.
func queueInvocation(fn string, m *ports.Delivered, deliveryCount int) map[string]any {
	const noZone, withZone = "2006-01-02T15:04:05", "2006-01-02T15:04:05-07:00"
	now := time.Now().UTC()
	enqueued, expires := m.EnqueuedAt.UTC(), m.EnqueuedAt.UTC().Add(14*24*time.Hour)
	md := map[string]any{
		"MessageReceiver":       map[string]any{},
		"MessageSession":        map[string]any{},
		"MessageActions":        map[string]any{},
		"SessionActions":        map[string]any{},
		"ReceiveActions":        map[string]any{},
		"Client":                map[string]any{"FullyQualifiedNamespace": "sb-e2e.servicebus.windows.net", "IsClosed": false, "TransportType": 0, "Identifier": "sb-e2e.servicebus.windows.net-1"},
		"MessageId":             jsonString(m.ID),
		"DeliveryCount":         strconv.Itoa(deliveryCount),
		"ContentType":           jsonString("application/json"),
		"SequenceNumber":        strconv.FormatInt(m.SequenceNumber, 10),
		"EnqueuedTimeUtc":       enqueued.Format(noZone),
		"EnqueuedTime":          enqueued.Format(withZone),
		"ExpiresAtUtc":          expires.Format(noZone),
		"ExpiresAt":             expires.Format(withZone),
		"LockToken":             jsonString(m.LockToken),
		"ApplicationProperties": map[string]any{"operation": m.Operation},
		"UserProperties":        map[string]any{"operation": m.Operation},
		"sys":                   map[string]any{"MethodName": fn, "UtcNow": now.Format(time.RFC3339Nano), "RandGuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"},
	}
	if m.CorrelationID != "" {
		md["CorrelationId"] = jsonString(m.CorrelationID)
	}
	if m.TraceParent != "" {
		// As the Service Bus adapter writes them (tracing.PropTraceParent).
		props := map[string]any{"operation": m.Operation, "traceparent": m.TraceParent, "Diagnostic-Id": m.TraceParent}
		if m.TraceState != "" {
			props["tracestate"] = m.TraceState
		}
		md["ApplicationProperties"], md["UserProperties"] = props, props
	}
	return map[string]any{
		"Data":     map[string]any{"msg": base64.StdEncoding.EncodeToString(m.Body)},
		"Metadata": md,
	}
}

type invocationResult struct {
	Outputs     map[string]json.RawMessage `json:"Outputs"`
	Logs        []string                   `json:"Logs"`
	ReturnValue any                        `json:"ReturnValue"`
}

func invoke(t *testing.T, p *proc, fn, invocationID string, payload any) (int, *invocationResult) {
	t.Helper()
	b, err := json.Marshal(payload)
	require.NoError(t, err)
	req, err := http.NewRequest("POST", p.base+"/"+fn, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", invocationID)
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1040.300.25317")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1040.300.25317")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out invocationResult
	if resp.StatusCode == http.StatusOK {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	}
	return resp.StatusCode, &out
}

// hostState is every document the chain touched, read through the
// forwarded HTTP routes.
func hostState(t *testing.T, a api, deliveryID string, drones []string) string {
	t.Helper()
	out := a.call(t, "GET", "/api/deliveries/"+deliveryID, nil).Body
	out = append(out, a.call(t, "GET", "/api/packages/pkg-"+deliveryID, nil).Body...)
	for _, d := range drones {
		out = append(out, a.fleet(t, "GET", "/api/drones/"+d, nil).Body...)
	}
	return string(out)
}

func TestHostProtocolChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startHost(t, dir)
	fleet := testFleet(10)
	var droneIDs []string
	for id := range fleet {
		droneIDs = append(droneIDs, id)
	}
	// Forwarded HTTP: the host passes the original request through.
	a := signUp(t, p.base)
	registerFleet(t, a, fleet)

	body := deliveryRequest("host-1", domain.Location{Latitude: 47.607, Longitude: -122.334},
		domain.Location{Latitude: 47.615, Longitude: -122.34}, "Small", 1.5)
	want := expectedDrones(availableDrones(t, a), &domain.DeliveryRequest{
		PickupLocation:  body["pickupLocation"].(domain.Location),
		DropoffLocation: body["dropOffLocation"].(domain.Location),
		PackageInfo:     domain.PackageInfo{Size: domain.SizeSmall, Weight: 1.5},
	})
	raw, _ := json.Marshal(body)

	// Invocation shape for the HTTP function: the 202 travels in Outputs.res.
	status, res := invoke(t, p, "IngestDelivery", "inv-unauthenticated", httpInvocation("POST", p.base+"/api/deliveryrequests", "", map[string]string{}, string(raw)))
	require.Equal(t, http.StatusOK, status)
	var out struct {
		StatusCode string            `json:"statusCode"`
		Body       string            `json:"body"`
		Headers    map[string]string `json:"headers"`
	}
	require.NoError(t, json.Unmarshal(res.Outputs["res"], &out), string(res.Outputs["res"]))
	require.Equal(t, "401", out.StatusCode, "the API key is checked under the host too: %s", out.Body)
	status, res = invoke(t, p, "IngestDelivery", "inv-ingest", httpInvocation("POST", p.base+"/api/deliveryrequests", a.key, map[string]string{}, string(raw)))
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(res.Outputs["res"], &out), string(res.Outputs["res"]))
	require.Equal(t, "202", out.StatusCode, out.Body)
	assert.Contains(t, out.Body, `"deliveryId":"host-1"`)

	// A 400 for the caller also travels inside a 200 to the host.
	status, res = invoke(t, p, "IngestDelivery", "inv-bad", httpInvocation("POST", p.base+"/api/deliveryrequests", a.key, map[string]string{}, `{"expedited":true}`))
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(res.Outputs["res"], &out))
	assert.Equal(t, "400", out.StatusCode)
	assert.Contains(t, out.Body, "pickupLocation")

	// Play the host for each queue step: take the message the previous step
	// emitted, invoke the function with it, then deliver it a second time;
	// the state after the duplicate must equal the state after the first.
	db := openEmbedded(t, dir)
	bus := db.Bus()
	for i, s := range hostChain {
		msgs := receiveOnly(t, bus, s.queue)
		m := msgs[0]
		if s.queue != topology.QueueNotifications {
			assert.Equal(t, "delivery", m.Operation)
		}
		status, res := invoke(t, p, s.fn, fmt.Sprintf("inv-%d-a", i), queueInvocation(s.fn, m, 1))
		require.Equal(t, http.StatusOK, status, s.fn)
		assert.Empty(t, res.Outputs, "queue outputs go through the bus, not output bindings")
		first := hostState(t, a, "host-1", droneIDs)
		status, _ = invoke(t, p, s.fn, fmt.Sprintf("inv-%d-b", i), queueInvocation(s.fn, m, 2))
		require.Equal(t, http.StatusOK, status, s.fn)
		assert.Equal(t, first, hostState(t, a, "host-1", droneIDs), "%s delivered twice changed state", s.fn)
		require.NoError(t, bus.Complete(ctxFor(t), m)) // autoCompleteMessages
	}
	for _, q := range topology.Queues {
		active, dead, err := bus.Depth(ctxFor(t), q)
		require.NoError(t, err)
		assert.Zero(t, active+dead, "%s: duplicates emitted no extra messages", q)
	}

	d := getDelivery(t, a, "host-1")
	assert.Contains(t, want, d.DroneID)
	checkSchedule(t, a, d)

	// A message that can never succeed fails each invocation, and the
	// host has a failed invocation's message abandoned: after the queue's
	// maxDeliveryCount it is in the dead-letter queue, where the operator
	// finds it, not lost.
	require.NoError(t, bus.Publish(ctxFor(t), ports.Message{ID: "poison", Queue: topology.QueueDeliveryRequests, Body: []byte("{oops"), Operation: "delivery"}))
	for n := 1; n <= topology.MaxDeliveryCount; n++ {
		m := receiveOnly(t, bus, topology.QueueDeliveryRequests)[0]
		require.Equal(t, "poison", m.ID)
		status, _ := invoke(t, p, "ScheduleDrone", fmt.Sprintf("inv-poison-%d", n), queueInvocation("ScheduleDrone", m, m.DeliveryCount))
		require.Equal(t, http.StatusInternalServerError, status, "delivery %d: the invocation fails, so that the message is abandoned", n)
		require.NoError(t, bus.Abandon(ctxFor(t), m))
	}
	active, deadCount, err := bus.Depth(ctxFor(t), topology.QueueDeliveryRequests)
	require.NoError(t, err)
	assert.Equal(t, [2]int{0, 1}, [2]int{active, deadCount}, "dead-lettered after the queue's maxDeliveryCount")
	dead := deadLetters(t, a)
	require.Len(t, dead, 1)
	assert.Equal(t, deadLetterDoc{ID: "poison", Queue: topology.QueueDeliveryRequests, Reason: "MaxDeliveryCountExceeded"}, dead[0])
	// The handler's stderr reaches the buffer through a pipe, a moment later.
	eventually(t, "the poison message's log line", func() bool {
		return strings.Contains(p.logs.String(), `"invocationId":"inv-poison-1"`)
	})
}

// TestHostStartsWithoutAnOperatorKey: under the Functions host a missing or
// unusable operator key closes the fleet endpoints, as serve does, instead
// of keeping the whole app down; the log names the setting.
func TestHostStartsWithoutAnOperatorKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, key, logged string }{
		{name: "unset", key: "", logged: "OPERATOR_KEY is not set"},
		{name: "a placeholder", key: "<paste a key here>", logged: "OPERATOR_KEY must be"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := launchHost(t, []string{"OPERATOR_KEY=" + tt.key, "DATA_DIR=" + t.TempDir()})
			waitReady(t, p)
			signUp(t, p.base) // the business API is up
			// With the key unset, the second request carries none.
			sendingMalformed(t, func() {
				for _, key := range []string{e2eOperatorKey, tt.key} {
					assert.Equal(t, http.StatusUnauthorized, callAs(t, key, "GET", p.base+"/api/drones?limit=1", nil).Status,
						"the fleet endpoints are closed to %q", key)
				}
			})
			eventually(t, "the log line naming the setting", func() bool {
				return strings.Contains(p.logs.String(), tt.logged)
			})
		})
	}
}

// TestHostLogsInfoToStdoutAndErrorsToStderr: the host makes an Error trace of
// every stderr line, so under it info goes to stdout and errors to stderr.
func TestHostLogsInfoToStdoutAndErrorsToStderr(t *testing.T) {
	t.Parallel()
	p := startHost(t, t.TempDir())
	poison := &ports.Delivered{Message: ports.Message{ID: "poison", Body: []byte("{oops"), Operation: "delivery"}, SequenceNumber: 7, EnqueuedAt: time.Now()}
	status, _ := invoke(t, p, "ScheduleDrone", "inv-logs-poison", queueInvocation("ScheduleDrone", poison, 1))
	require.Equal(t, http.StatusInternalServerError, status, "failed, so that Service Bus dead-letters it")

	levels := func(out string) map[string][]string {
		byLevel := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var rec struct{ Level, Msg, InvocationID string }
			require.NoError(t, json.Unmarshal([]byte(line), &rec), "every line is JSON: %q", line)
			byLevel[rec.Level] = append(byLevel[rec.Level], rec.Msg+" "+rec.InvocationID)
		}
		return byLevel
	}
	eventually(t, "the poison message's error line on stderr", func() bool {
		return strings.Contains(p.logs.String(), `"invocationId":"inv-logs-poison"`)
	})
	stderr, stdout := levels(p.logs.String()), levels(p.out.String())
	assert.NotEmpty(t, stderr["ERROR"])
	assert.Empty(t, stderr["INFO"], "no info line on stderr")
	assert.Empty(t, stderr["DEBUG"], "no debug line on stderr")
	assert.Contains(t, stdout["INFO"], "custom handler ready ")
	assert.Empty(t, stdout["ERROR"], "no error line on stdout")
	assert.Empty(t, stdout["WARN"], "no warning on stdout")
}

// TestHostAnswersBeforeCosmosIsReachable: the host waits 30 s for the port and
// gives up on a handler that exits three times, so the handler listens at
// once and opens Cosmos DB behind it: with the account unreachable the port
// answers (503 for HTTP, a non-2xx for an invocation), and the handler
// becomes ready once the account can be reached. The test asserts no
// duration: the answer arriving while Cosmos DB cannot be reached is what
// shows that listening does not wait for it.
func TestHostAnswersBeforeCosmosIsReachable(t *testing.T) {
	t.Parallel()
	cosmos := cosmosdouble.StartCosmos(t)
	sb := servicebusdouble.StartServiceBus(t)
	double := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(cosmos, ";", 2)[0], "AccountEndpoint=http://"), "/")
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens here yet
	p := launchHost(t, []string{
		"OPERATOR_KEY=" + e2eOperatorKey,
		"CosmosDBConnection=" + strings.Replace(cosmos, double, closed, 1),
		"ServiceBusConnection=" + sb.ConnectionString(),
		fmt.Sprintf("COSMOS_DATABASE=e2estart%d", time.Now().UnixNano()),
		"COSMOS_BOOTSTRAP=true",
	}, "host", "-start-wait", "50ms")

	// Cosmos DB stays unreachable until the proxy below opens, so an answer
	// now shows the handler listening without waiting for it: the host's
	// readiness check passes at once, however slow the machine.
	var resp *http.Response
	eventually(t, "the port to answer", func() bool {
		var err error
		resp, err = http.Get(p.base + "/api/healthz")
		return err == nil
	})
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	m := &ports.Delivered{Message: ports.Message{ID: "early", Body: []byte(`{}`), Operation: "delivery"}, EnqueuedAt: time.Now()}
	status, _ := invoke(t, p, "ScheduleDrone", "inv-early", queueInvocation("ScheduleDrone", m, 1))
	assert.GreaterOrEqual(t, status, 300, "an invocation before the backend opens fails, so Service Bus delivers it again")

	proxy(t, closed, double) // the account becomes reachable
	waitReady(t, p)
	a := signUp(t, p.base)
	assert.NotEmpty(t, a.key, "the business API works on Cosmos DB")
}

// proxy forwards connections to from on to to, for the rest of the test.
func proxy(t *testing.T, from, to string) {
	t.Helper()
	ln, err := net.Listen("tcp", from)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); done <- struct{}{} }()
				go func() { io.Copy(c, u); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// TestHostOnTheEmbeddedBackendRunsTheChain: under the host with no Service
// Bus settings (a local `func start`), the host's queue triggers have
// nothing to read, so the handler consumes the embedded queues itself and
// a request reaches Scheduled through forwarded HTTP alone; it says so in
// a warning. The route is written as a client of the host may write it.
func TestHostOnTheEmbeddedBackendRunsTheChain(t *testing.T) {
	t.Parallel()
	p := launchHost(t, []string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + t.TempDir(), "CONSUME_EMBEDDED_QUEUES=true"})
	waitReady(t, p)
	a := signUp(t, p.base)
	registerFleet(t, a, testFleet(3))
	body := deliveryRequest("local-1", domain.Location{Latitude: 47.607, Longitude: -122.334},
		domain.Location{Latitude: 47.615, Longitude: -122.34}, "Small", 1.5)
	// Outside the OpenAPI document's spelling, so not through a.call,
	// which holds every exchange to the document.
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", p.base+"/API/DeliveryRequests/", bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	d := waitStage(t, a, "local-1", domain.StageScheduled, domain.StageFailed)
	require.Equal(t, domain.StageScheduled, d.Stage, d.FailureReason)
	assert.Contains(t, p.logs.String(), "consumed by this handler")
}
