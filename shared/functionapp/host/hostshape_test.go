package host

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// The testdata/servicebus_host_<Function>.json files are queue invocations
// in the shape the Functions host produces, one per queue function of the
// app. What makes that shape, read from the sources:
//
//   - Azure/azure-functions-host,
//     src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs,
//     ToHttpScriptInvocationContext and GetHttpScriptInvocationContextValue:
//     binding data whose value is null is left out; a DateTime or
//     DateTimeOffset is re-parsed from its ToString(), which drops the
//     fraction of a second (and a DateTime's zone); a value JObject.FromObject
//     accepts (a dictionary, an object) stays an object; any other value
//     (a string, a number) is sent as its JsonConvert.SerializeObject text,
//     so "abc" arrives as "\"abc\"" and 3 as "3"; a byte[] of a binary
//     trigger is base64.
//   - Azure/azure-sdk-for-net,
//     sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Triggers/ServiceBusTriggerBindingStrategy.cs,
//     GetBindingData: the keys (ExpiresAtUtc and EnqueuedTimeUtc are the
//     DateTimeOffset's .DateTime, of unspecified kind, so they arrive without
//     a zone) and the MessageReceiver, MessageSession, MessageActions,
//     SessionActions, ReceiveActions and Client objects, which serialize as
//     their public properties (none for the actions).
//   - Azure/azure-webjobs-sdk,
//     src/Microsoft.Azure.WebJobs.Host/Bindings/SystemBindingData.cs: sys is
//     {MethodName, UtcNow, RandGuid}, an object, so its time keeps its
//     fraction and zone.

// hostShaped is what each host-shaped fixture must decode to.
var hostShaped = map[string]struct {
	id, correlationID, operation string
	deliveryCount                int
	parse                        func([]byte) error // the step's own decoder accepts the body
}{
	"ScheduleDrone":       {"d-0042:requested", "corr-7f3a", "delivery", 1, parseEnvelope},
	"UpdatePackage":       {"d-0042:drone-scheduled", "corr-7f3a", "delivery", 1, parseEnvelope},
	"ComputeEta":          {"d-0042:package-updated", "corr-7f3a", "delivery", 2, parseEnvelope},
	"SendNotification":    {"d-0042:n1", "corr-7f3a", "notify", 1, parseEnvelope},
	"TrackDrone":          {"drone-07:t:1741944410000000000", "drone-07", "telemetry", 1, parseTelemetry},
	"SendCustomerMessage": {"d-0042:n1:to-s1-email", "corr-7f3a", "customer-message", 1, parseEnvelope},
}

func parseEnvelope(b []byte) error { _, err := wire.ParseEnvelope(b); return err }

func parseTelemetry(b []byte) error { _, err := wire.ParseTelemetryMessage(b); return err }

// appFunctions reads the app's own function.json files.
func appFunctions(t *testing.T) []functionapp.FunctionConfig {
	t.Helper()
	fns, err := functionapp.LoadFunctions(os.DirFS(filepath.Join("..", "..", "..")), "functions")
	require.NoError(t, err)
	return fns
}

func TestEveryQueueFunctionHasAHostShapedFixture(t *testing.T) {
	t.Parallel()
	var queueFns []string
	for _, fc := range appFunctions(t) {
		if fc.Trigger().Type == "serviceBusTrigger" {
			queueFns = append(queueFns, fc.Name)
			_, err := os.Stat(filepath.Join("testdata", "servicebus_host_"+fc.Name+".json"))
			assert.NoError(t, err, "functions/%s is queue-triggered but has no host-shaped fixture", fc.Name)
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "servicebus_host_*.json"))
	require.NoError(t, err)
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "servicebus_host_"), ".json")
		assert.Contains(t, queueFns, name, "%s is a fixture for a function the app does not have (or that is not queue-triggered)", f)
	}
	for _, name := range queueFns {
		_, ok := hostShaped[name]
		assert.True(t, ok, "hostShaped has no entry for %s: add what its fixture holds (message id, correlation id, operation, delivery count, parser)", name)
	}
	for name := range hostShaped {
		assert.Contains(t, queueFns, name, "hostShaped has an entry for %s, which is no queue-triggered function of the app", name)
	}
}

// TestHostShapedFixturesHaveTheHostsShape keeps the fixtures honest: no
// nulls, times without a fraction, the *Utc times without a zone, scalars
// double-encoded, the action objects present.
func TestHostShapedFixturesHaveTheHostsShape(t *testing.T) {
	t.Parallel()
	noFraction := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00)?$`)
	for name := range hostShaped {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc := golden(t, "servicebus_host_"+name+".json")
			assert.NotContains(t, string(doc), "null", "the host leaves null values out")
			var inv struct {
				Data     map[string]json.RawMessage
				Metadata map[string]json.RawMessage
			}
			require.NoError(t, json.Unmarshal(doc, &inv))
			for _, key := range []string{"EnqueuedTimeUtc", "ExpiresAtUtc", "EnqueuedTime", "ExpiresAt"} {
				var s string
				require.NoError(t, json.Unmarshal(inv.Metadata[key], &s), key)
				assert.Regexp(t, noFraction, s, key)
				if key[len(key)-3:] == "Utc" {
					assert.NotContains(t, s, "+", "%s is a DateTime of unspecified kind: no zone", key)
				}
			}
			for _, key := range []string{"MessageId", "CorrelationId", "LockToken", "ContentType"} {
				assert.True(t, bytes.HasPrefix(inv.Metadata[key], []byte(`"\"`)), "%s is a string holding JSON: %s", key, inv.Metadata[key])
			}
			for _, key := range []string{"MessageActions", "SessionActions", "ReceiveActions", "MessageReceiver", "MessageSession", "Client", "ApplicationProperties", "sys"} {
				assert.Equal(t, byte('{'), inv.Metadata[key][0], "%s is an object", key)
			}
			assert.JSONEq(t, `{}`, string(inv.Metadata["MessageActions"]))
		})
	}
}

// TestHostShapedFixturesDecode runs each fixture through the handler built
// from the app's function.json files: the message arrives whole, its times
// in UTC to the second, and nothing is reported as undecodable.
func TestHostShapedFixturesDecode(t *testing.T) {
	t.Parallel()
	fns := appFunctions(t)
	var mu sync.Mutex
	got := map[string]*ports.Delivered{}
	reg := functionapp.Registry{}
	for _, fc := range fns {
		name := fc.Name
		switch fc.Trigger().Type {
		case "serviceBusTrigger":
			reg[name] = functionapp.Function{Queue: func(_ context.Context, msg *ports.Delivered) ([]ports.Message, error) {
				mu.Lock()
				defer mu.Unlock()
				got[name] = msg
				return nil, nil
			}}
		case "httpTrigger":
			reg[name] = functionapp.Function{HTTP: echo, Public: fc.Trigger().AuthLevel == "anonymous"}
		}
	}
	h, err := New(reg, fns, &fakePublisher{ev: &events{}}, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	enqueued := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	for name, want := range hostShaped {
		t.Run(name, func(t *testing.T) {
			req := newRequest("POST", "/"+name, golden(t, "servicebus_host_"+name+".json"))
			rec := &recorder{ResponseRecorder: httptest.NewRecorder(), ev: &events{}}
			h.ServeHTTP(rec, req)
			rep := decodeReply(t, rec)
			for _, l := range rep.Logs {
				assert.NotContains(t, l, "ignored metadata", "the host's shape decodes without warnings")
			}
			mu.Lock()
			msg := got[name]
			mu.Unlock()
			require.NotNil(t, msg)
			assert.Equal(t, want.id, msg.ID)
			assert.Equal(t, want.correlationID, msg.CorrelationID)
			assert.Equal(t, want.operation, msg.Operation)
			assert.Equal(t, want.deliveryCount, msg.DeliveryCount)
			assert.True(t, enqueued.Equal(msg.EnqueuedAt), "EnqueuedAt %v", msg.EnqueuedAt)
			assert.Equal(t, time.UTC, msg.EnqueuedAt.Location())
			assert.NotEmpty(t, msg.LockToken)
			assert.NotZero(t, msg.SequenceNumber)
			assert.NoError(t, want.parse(msg.Body), "the step's decoder accepts the body: %s", msg.Body)
		})
	}
}
