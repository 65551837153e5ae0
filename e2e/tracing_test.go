package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/otlpdouble"
)

// deliveryChain is the functions one accepted delivery runs through on its
// way to Scheduled, each the one before's child in the delivery's trace.
var deliveryChain = []string{"IngestDelivery", "ScheduleDrone", "UpdatePackage", "ComputeEta", "SendNotification"}

// otlpEnv points the binary's exporter at rcv and has it export at once
// rather than every five seconds.
func otlpEnv(rcv *otlpdouble.OTLPReceiver) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL,
		"OTEL_BSP_SCHEDULE_DELAY=50",
		"OTEL_SERVICE_NAME=dronedelivery-e2e",
	}
}

// clientSpan is the span of a caller that sends a traceparent header.
type clientSpan struct{ traceID, spanID string }

func newClientSpan(t *testing.T) clientSpan {
	var tid [16]byte
	var sid [8]byte
	_, err := rand.Read(tid[:])
	require.NoError(t, err)
	_, err = rand.Read(sid[:])
	require.NoError(t, err)
	return clientSpan{hex.EncodeToString(tid[:]), hex.EncodeToString(sid[:])}
}

func (c clientSpan) traceparent() string { return "00-" + c.traceID + "-" + c.spanID + "-01" }

// tracedDelivery signs a business up with the instance at base, registers
// a fleet and submits delivery id inside a new caller's span.
func tracedDelivery(t *testing.T, base, id string) (api, clientSpan) {
	t.Helper()
	a := signUp(t, base)
	registerFleet(t, a, testFleet(10))
	c := newClientSpan(t)
	submitTraced(t, a, c, deliveryRequest(id, domain.Location{Latitude: 47.607, Longitude: -122.334},
		domain.Location{Latitude: 47.615, Longitude: -122.34}, "Small", 1.5))
	return a, c
}

// submitTraced posts a delivery request as the business, inside the
// caller's span c.
func submitTraced(t *testing.T, a api, c clientSpan, body any) {
	t.Helper()
	client := a.client(t)
	client.Header = http.Header{"Traceparent": {c.traceparent()}, "Tracestate": {"e2e=1"}}
	_, err := client.PostDelivery(context.Background(), body)
	require.NoError(t, err)
}

// checkDeliveryTrace waits until the receiver holds a span of every
// function of chain in the caller's trace, then checks that the chain is
// one trace of parent links: the ingest's span is the caller's child,
// every step's span the child of the step that sent its message; that
// every span names the delivery and the service; and that no span naming
// the delivery lies in another trace.
func checkDeliveryTrace(t *testing.T, rcv *otlpdouble.OTLPReceiver, c clientSpan, deliveryID string, chain ...string) {
	t.Helper()
	if len(chain) == 0 {
		chain = deliveryChain
	}
	var spans []otlpdouble.Span
	byName := map[string][]otlpdouble.Span{}
	eventually(t, "a span of every step in the delivery's trace", func() bool {
		spans = nil
		clear(byName)
		for _, s := range rcv.Spans() {
			if s.TraceID == c.traceID {
				spans = append(spans, s)
				byName[s.Name] = append(byName[s.Name], s)
			}
		}
		for _, fn := range chain {
			if len(byName[fn]) == 0 {
				return false
			}
		}
		return true
	})
	ids := map[string]string{} // span id → function
	for _, s := range spans {
		ids[s.SpanID] = s.Name
	}
	ingest := byName[chain[0]]
	require.Len(t, ingest, 1)
	assert.Equal(t, c.spanID, ingest[0].ParentID, "the ingest's span is the caller's child")
	assert.Equal(t, "SPAN_KIND_SERVER", ingest[0].Kind.String())
	assert.Equal(t, "202", ingest[0].Attributes["http.response.status_code"])
	for i, fn := range chain[1:] {
		for _, s := range byName[fn] {
			assert.Equal(t, chain[i], ids[s.ParentID], "%s's parent is a span of %s", fn, chain[i])
			assert.Equal(t, "SPAN_KIND_CONSUMER", s.Kind.String(), fn)
			assert.False(t, s.StatusError, "%s: %s", fn, s.StatusMessage)
		}
	}
	for _, s := range spans {
		assert.Equal(t, deliveryID, s.Attributes["deliveryId"], "%s names the delivery", s.Name)
		assert.Equal(t, "dronedelivery-e2e", s.Service, s.Name)
	}
	for _, s := range rcv.Spans() {
		if s.Attributes["deliveryId"] == deliveryID {
			assert.Equal(t, c.traceID, s.TraceID, "%s names the delivery in another trace", s.Name)
		}
	}
}

// rootOf waits for the span of function fn that names the delivery and
// returns its trace and span, for a request sent without a traceparent.
func rootOf(t *testing.T, rcv *otlpdouble.OTLPReceiver, fn, deliveryID string) clientSpan {
	t.Helper()
	var c clientSpan
	eventually(t, fn+"'s span for "+deliveryID, func() bool {
		for _, s := range rcv.Spans() {
			if s.Name == fn && s.Attributes["deliveryId"] == deliveryID {
				c = clientSpan{traceID: s.TraceID, spanID: s.ParentID}
				return true
			}
		}
		return false
	})
	return c
}

// traceScenario accepts one delivery inside a caller's span and checks its
// trace.
func traceScenario(t *testing.T, p *proc, rcv *otlpdouble.OTLPReceiver) {
	id := "traced-1"
	a, c := tracedDelivery(t, p.base, id)
	d := waitStage(t, a, id, domain.StageScheduled)
	checkDeliveryTrace(t, rcv, c, id)

	// A telemetry report is a trace of its own, whose TrackDrone span names
	// the delivery the drone flies.
	postReport(t, a, d.DroneID, d.PickupLocation, 90, time.Now().UTC())
	eventually(t, "the report's TrackDrone span, the child of its PostTelemetry span", func() bool {
		spans := rcv.Spans()
		for _, track := range spans {
			if track.Name != "TrackDrone" || track.Attributes["deliveryId"] != id {
				continue
			}
			for _, post := range spans {
				if post.Name == "PostTelemetry" && post.SpanID == track.ParentID && post.TraceID == track.TraceID {
					return true
				}
			}
		}
		return false
	})
}

// TestTraceOfADelivery: the standalone runtime on the embedded backend
// exports, over OTLP/HTTP, one trace for a delivery from the caller's
// span through every step, and one per telemetry report.
func TestTraceOfADelivery(t *testing.T) {
	t.Parallel()
	rcv := otlpdouble.StartOTLPReceiver(t)
	p := startServeEnv(t, t.TempDir(), otlpEnv(rcv))
	traceScenario(t, p, rcv)
	p.stop(t)
}

// TestTraceOfADeliveryOnAzureAdapters: the same on Cosmos DB and Service
// Bus (the local doubles), where the trace context crosses the broker in
// the messages' application properties.
func TestTraceOfADeliveryOnAzureAdapters(t *testing.T) {
	t.Parallel()
	rcv := otlpdouble.StartOTLPReceiver(t)
	p := startOnAzure(t, otlpEnv(rcv)...)
	traceScenario(t, p, rcv)
	p.stop(t)
}

// TestTraceOfADeliveryOnSQS: the same with SQS between the steps, the
// trace context in the messages' attributes.
func TestTraceOfADeliveryOnSQS(t *testing.T) {
	t.Parallel()
	rcv := otlpdouble.StartOTLPReceiver(t)
	_, env := awsEnv(t)
	p := startServeEnv(t, t.TempDir(), append(env, otlpEnv(rcv)...))
	traceScenario(t, p, rcv)
	p.stop(t)
}

// TestTraceOfADeliveryUnderTheHost: under the Functions host's protocol,
// the test playing the host hands each step the message the step before
// sent, its trace context in the application properties as Service Bus
// delivers them, and the chain is one trace again.
func TestTraceOfADeliveryUnderTheHost(t *testing.T) {
	t.Parallel()
	rcv := otlpdouble.StartOTLPReceiver(t)
	dir := t.TempDir()
	p := launchHost(t, append([]string{"OPERATOR_KEY=" + e2eOperatorKey, "DATA_DIR=" + dir}, otlpEnv(rcv)...))
	waitReady(t, p)
	id := "traced-host"
	a, c := tracedDelivery(t, p.base, id)

	db := openEmbedded(t, dir)
	bus := db.Bus()
	for i, s := range hostChain {
		msgs := receiveOnly(t, bus, s.queue)
		require.NotEmpty(t, msgs[0].TraceParent, "%s: the message carries its sender's span", s.queue)
		status, _ := invoke(t, p, s.fn, fmt.Sprintf("inv-trace-%d", i), queueInvocation(s.fn, msgs[0], 1))
		require.Equal(t, http.StatusOK, status, s.fn)
		require.NoError(t, bus.Complete(ctxFor(t), msgs[0]))
	}
	waitStage(t, a, id, domain.StageScheduled)
	checkDeliveryTrace(t, rcv, c, id)
}
