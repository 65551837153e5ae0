package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
)

// jsonString double-encodes a scalar the way the host sends Service Bus
// trigger metadata: a JSON string holding the value's JSON.
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

// queueInvocation is what the host POSTs for a serviceBusTrigger with
// dataType binary: the body in base64, scalar metadata double-encoded.
func queueInvocation(fn string, m *ports.Delivered, deliveryCount int) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"Data": map[string]any{"msg": base64.StdEncoding.EncodeToString(m.Body)},
		"Metadata": map[string]any{
			"MessageId":             jsonString(m.ID),
			"DeliveryCount":         strconv.Itoa(deliveryCount),
			"CorrelationId":         jsonString(m.CorrelationID),
			"SessionId":             "null",
			"ContentType":           jsonString("application/json"),
			"SequenceNumber":        strconv.FormatInt(m.SequenceNumber, 10),
			"EnqueuedTimeUtc":       jsonString(m.EnqueuedAt.UTC().Format(time.RFC3339Nano)),
			"EnqueuedTime":          jsonString(m.EnqueuedAt.UTC().Format(time.RFC3339Nano)),
			"ExpiresAtUtc":          jsonString(now.Add(14 * 24 * time.Hour).Format(time.RFC3339Nano)),
			"LockToken":             jsonString(m.LockToken),
			"ApplicationProperties": map[string]any{"operation": m.Operation},
			"UserProperties":        map[string]any{"operation": m.Operation},
			"sys":                   map[string]any{"MethodName": fn, "UtcNow": now.Format(time.RFC3339Nano), "RandGuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"},
		},
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
	want := expectedDrone(availableDrones(t, a), &domain.DeliveryRequest{
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
	db, err := embedded.Open(filepath.Join(dir, "dronedelivery.db"), embedded.Options{})
	require.NoError(t, err)
	defer db.Close()
	bus := db.Bus()
	steps := []struct{ fn, queue string }{
		{"ScheduleDrone", topology.QueueDeliveryRequests},
		{"UpdatePackage", topology.QueueDroneScheduled},
		{"ComputeEta", topology.QueuePackageUpdated},
		{"SendNotification", topology.QueueNotifications},
	}
	for i, s := range steps {
		msgs, err := bus.Receive(ctxFor(t), s.queue, 10)
		require.NoError(t, err, s.queue)
		require.Len(t, msgs, 1, s.queue)
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
	assert.Equal(t, want, d.DroneID)
	checkSchedule(t, a, d)

	// A message that can never succeed is acknowledged (200), not retried forever.
	poison := &ports.Delivered{Message: ports.Message{ID: "poison", Body: []byte("{oops"), Operation: "delivery"}, SequenceNumber: 99, EnqueuedAt: time.Now()}
	status, res = invoke(t, p, "ScheduleDrone", "inv-poison", queueInvocation("ScheduleDrone", poison, 1))
	assert.Equal(t, http.StatusOK, status)
	assert.NotEmpty(t, res.Logs)
	// The handler's stderr reaches the buffer through a pipe, a moment later.
	eventually(t, "the poison message's log line", func() bool {
		return strings.Contains(p.logs.String(), `"invocationId":"inv-poison"`)
	})
}

// TestHostNeedsAnOperatorKey: under the Functions host the operator key is
// an app setting, and a deployment without it fails at start-up, naming it.
func TestHostNeedsAnOperatorKey(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=1", "OPERATOR_KEY=", "DATA_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the handler must not start")
	assert.Contains(t, string(out), "OPERATOR_KEY is not set")

	cmd = exec.Command(binary)
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=1", "OPERATOR_KEY=<paste a key here>", "DATA_DIR="+t.TempDir())
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "a placeholder is not a key")
	assert.Contains(t, string(out), "OPERATOR_KEY must be")
}
