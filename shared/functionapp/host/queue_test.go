package host

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// ingested is the Delivered that every encoding of the ingest message
// must decode to.
func ingested() ports.Delivered {
	return ports.Delivered{
		Message: ports.Message{
			ID:            "d-0042.ingest",
			Queue:         topology.QueueDeliveryRequests,
			Body:          []byte(envelopeBody),
			CorrelationID: "corr-7f3a",
			Operation:     "delivery",
		},
		DeliveryCount:  3,
		EnqueuedAt:     time.Date(2025, 3, 14, 9, 26, 53, 589793200, time.UTC),
		SequenceNumber: 12884901893,
		LockToken:      "5f4e0b6c-1d2a-4c8e-9a7b-3e2f1d0c9b8a",
	}
}

func TestQueueInvocationDecodesMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  func(t *testing.T) []byte
		want func() ports.Delivered
		logs []string // lines expected in Logs before the outcome's line
	}{
		{name: "double-encoded metadata and body", doc: goldenDoc("servicebus_double_encoded.json"), want: ingested},
		{name: "plain metadata and an object body", doc: goldenDoc("servicebus_object_body.json"), want: ingested},
		{name: "base64 body of a binary trigger", doc: goldenDoc("servicebus_base64_body.json"), want: ingested},
		{
			name: "older host: UserProperties only, null correlation id, a dead-lettered message",
			doc:  goldenDoc("servicebus_user_properties.json"),
			want: func() ports.Delivered {
				return ports.Delivered{
					Message: ports.Message{
						ID:        "d-0099.cancel",
						Queue:     topology.QueueDeliveryRequests,
						Body:      []byte(`{"operation":"cancel","deliveryId":"d-0099","correlationId":"corr-1b2c"}`),
						Operation: "cancel",
					},
					DeliveryCount:         10,
					EnqueuedAt:            time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC),
					SequenceNumber:        42,
					LockToken:             "00000000-0000-0000-0000-000000000000",
					DeadLetterReason:      "MaxDeliveryCountExceeded",
					DeadLetterDescription: "Message could not be consumed after 10 delivery attempts.",
				}
			},
		},
		{
			name: "ApplicationProperties wins over UserProperties",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "UserProperties", map[string]any{"operation": "cancel"})
			},
			want: ingested,
		},
		{
			name: "the trace context in the application properties, by either Azure SDK name",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "ApplicationProperties", map[string]any{
					"operation": "delivery", "Diagnostic-Id": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"})
			},
			want: func() ports.Delivered {
				d := ingested()
				d.TraceParent, d.TraceState = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b"
				return d
			},
		},
		{
			name: "the versions of documents the sender left behind, in the application properties",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "ApplicationProperties", map[string]any{
					"operation": "delivery", "documentVersions": `{"deliveries/d-1":"\"e1\""}`})
			},
			want: func() ports.Delivered {
				d := ingested()
				d.Versions = `{"deliveries/d-1":"\"e1\""}`
				return d
			},
		},
		{
			name: "EnqueuedTime stands in for a missing EnqueuedTimeUtc",
			doc: func(t *testing.T) []byte {
				return patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "EnqueuedTimeUtc", nil)
			},
			want: ingested,
		},
		{
			name: "undecodable metadata is ignored with a warning, not a failure",
			doc: func(t *testing.T) []byte {
				doc := patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "DeliveryCount", `"three"`)
				return patch(t, doc, "Metadata", "EnqueuedTimeUtc", "14/03/2025 09:26:53")
			},
			want: func() ports.Delivered {
				d := ingested()
				d.DeliveryCount = 0
				return d
			},
			logs: []string{
				`ignored metadata: DeliveryCount: want an integer, got "three"`,
				`ignored metadata: EnqueuedTimeUtc: want an ISO 8601 time, got "14/03/2025 09:26:53"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			rep := decodeReply(t, f.invoke("ScheduleDrone", "inv-q", tt.doc(t)))

			got := f.delivered()
			require.Len(t, got, 1)
			want := tt.want()
			assert.Equal(t, string(want.Body), string(got[0].Body))
			assert.True(t, want.EnqueuedAt.Equal(got[0].EnqueuedAt), "EnqueuedAt %v, want %v", got[0].EnqueuedAt, want.EnqueuedAt)
			want.EnqueuedAt = got[0].EnqueuedAt
			assert.Equal(t, want, *got[0])
			require.Len(t, rep.Logs, len(tt.logs)+1)
			for i, line := range tt.logs {
				assert.Equal(t, line, rep.Logs[i])
			}
		})
	}
}

func goldenDoc(name string) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return golden(t, name) }
}

func TestQueueBodyEncodingsAgree(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, name := range []string{"servicebus_double_encoded.json", "servicebus_object_body.json", "servicebus_base64_body.json"} {
		decodeReply(t, f.invoke("ScheduleDrone", "inv-"+name, golden(t, name)))
	}
	got := f.delivered()
	require.Len(t, got, 3)
	for _, d := range got {
		assert.Equal(t, envelopeBody, string(d.Body))
	}
}

func TestMessageBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		binary bool
		want   string
	}{
		{name: "base64 on a binary trigger", raw: `"aGVsbG8="`, binary: true, want: "hello"},
		{name: "double-encoded JSON on a binary trigger", raw: `"{\"a\":1}"`, binary: true, want: `{"a":1}`},
		{name: "double-encoded JSON", raw: `"{\"a\":1}"`, want: `{"a":1}`},
		{name: "a string is not decoded without dataType binary", raw: `"aGVsbG8="`, want: "aGVsbG8="},
		{name: "an object as is", raw: `{"a":[1,2]}`, want: `{"a":[1,2]}`},
		{name: "an array as is", raw: `[1,2]`, binary: true, want: `[1,2]`},
		{name: "null is an empty body", raw: `null`, binary: true, want: ""},
		{name: "an empty base64 string is an empty body", raw: `""`, binary: true, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := messageBody([]byte(tt.raw), tt.binary)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
}

func TestQueueOutcomes(t *testing.T) {
	t.Parallel()
	next := ports.Message{
		ID: "d-0042.schedule", Queue: topology.QueueDroneScheduled, Body: []byte(`{"operation":"delivery","deliveryId":"d-0042","correlationId":"corr-7f3a"}`),
		CorrelationID: "corr-7f3a", Operation: "delivery",
	}
	// The copy a transient failure schedules: the message as delivered,
	// with the first redelivery's id, due 2 s (DefaultRetry.First) later.
	retry := ports.Message{
		ID: "d-0042.ingest:redelivery-1", Queue: topology.QueueDeliveryRequests, Body: []byte(envelopeBody),
		CorrelationID: "corr-7f3a", Operation: "delivery", NotBefore: fixtureNow.Add(2 * time.Second),
	}
	tests := []struct {
		name       string
		step       stepFunc
		publishErr error
		status     int
		events     []string
		published  [][]ports.Message
		logLine    string // the reply's last Logs line, for a 200
		problem    string // the problem's detail, when one is given for a 500
		errorLog   bool   // whether an error-level line is logged
	}{
		{
			name:      "done: the output is published once, before the 200",
			step:      func(*ports.Delivered) ([]ports.Message, error) { return []ports.Message{next}, nil },
			status:    http.StatusOK,
			events:    []string{"publish", "status 200"},
			published: [][]ports.Message{{next}},
			logLine:   "message d-0042.ingest processed on delivery 3; 1 message(s) published",
		},
		{
			name:    "done without outputs publishes nothing",
			status:  http.StatusOK,
			events:  []string{"status 200"},
			logLine: "message d-0042.ingest processed on delivery 3; 0 message(s) published",
		},
		{
			name: "a transient error schedules a retry and completes the message",
			step: func(*ports.Delivered) ([]ports.Message, error) {
				return nil, domain.Unavailable(errors.New("429 from the store"), "store unavailable")
			},
			status:    http.StatusOK,
			events:    []string{"publish", "status 200"},
			published: [][]ports.Message{{retry}},
			logLine:   "message d-0042.ingest failed and retry 1 of 8 is scheduled as d-0042.ingest:redelivery-1 at 2025-03-14T09:27:02Z: store unavailable: 429 from the store",
		},
		{
			// Failed, so that Service Bus dead-letters it after the
			// queue's maxDeliveryCount: acknowledged, it would be lost.
			name: "a permanent error fails the invocation and schedules nothing",
			step: func(*ports.Delivered) ([]ports.Message, error) {
				return []ports.Message{next}, &domain.Permanent{Err: domain.Invalid("operation", "must be one of delivery, cancel, reschedule")}
			},
			status:   http.StatusInternalServerError,
			events:   []string{"status 500"},
			problem:  "message d-0042.ingest can never succeed (permanent: operation: must be one of delivery, cancel, reschedule); it is failed so that Service Bus dead-letters it",
			errorLog: true,
		},
		{
			name:      "a panic is retried later",
			step:      func(*ports.Delivered) ([]ports.Message, error) { panic("nil map") },
			status:    http.StatusOK,
			events:    []string{"publish", "status 200"},
			published: [][]ports.Message{{retry}},
			logLine:   "message d-0042.ingest failed and retry 1 of 8 is scheduled as d-0042.ingest:redelivery-1 at 2025-03-14T09:27:02Z: handler panic: nil map",
		},
		{
			name:       "a publish failure that also stops the retry is left to Service Bus",
			step:       func(*ports.Delivered) ([]ports.Message, error) { return []ports.Message{next}, nil },
			publishErr: errors.New("amqp: link detached"),
			status:     http.StatusInternalServerError,
			events:     []string{"publish", "publish", "status 500"},
			published:  [][]ports.Message{{next}, {retry}},
			errorLog:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.step)
			f.pub.err = tt.publishErr
			rec := f.invoke("ScheduleDrone", "inv-outcome", golden(t, "servicebus_double_encoded.json"))

			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			assert.Equal(t, tt.events, f.ev.get())
			assert.Equal(t, tt.published, f.pub.published())
			if tt.status == http.StatusOK {
				rep := decodeReply(t, rec)
				assert.Empty(t, rep.Outputs)
				assert.JSONEq(t, `null`, string(rep.ReturnValue))
				require.NotEmpty(t, rep.Logs)
				assert.Equal(t, tt.logLine, rep.Logs[len(rep.Logs)-1])
			} else {
				p := problemOf(t, rec)
				assert.Equal(t, http.StatusInternalServerError, p.Status)
				if tt.problem != "" {
					assert.Equal(t, tt.problem, p.Detail)
				}
			}
			var errorLines int
			for _, l := range f.logs.lines(t) {
				if l["level"] == "ERROR" {
					errorLines++
					assert.Equal(t, "d-0042.ingest", l["messageId"])
				}
			}
			assert.Equal(t, tt.errorLog, errorLines > 0)
		})
	}
}

func TestLogLinesCarryInvocationAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, function, golden string
		want                   map[string]any
	}{
		{
			name: "queue", function: "ScheduleDrone", golden: "servicebus_double_encoded.json",
			want: map[string]any{"invocationId": "inv-logs", "function": "ScheduleDrone", "messageId": "d-0042.ingest", "correlationId": "corr-7f3a"},
		},
		{
			name: "http", function: "Echo", golden: "http_get_query_object.json",
			want: map[string]any{"invocationId": "inv-logs", "function": "Echo"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			decodeReply(t, f.invoke(tt.function, "inv-logs", golden(t, tt.golden)))
			lines := f.logs.lines(t)
			require.NotEmpty(t, lines)
			for _, l := range lines {
				for k, v := range tt.want {
					assert.Equal(t, v, l[k], "attribute %s of %v", k, l)
				}
			}
		})
	}
}

func TestInvocationErrors(t *testing.T) {
	t.Parallel()
	queueDoc := func(t *testing.T) []byte { return golden(t, "servicebus_double_encoded.json") }
	httpDoc := func(t *testing.T) []byte { return golden(t, "http_get_query_object.json") }
	tests := []struct {
		name, method, function string
		body                   func(t *testing.T) []byte
		status                 int
		detail                 string // a substring of the problem's detail
	}{
		{name: "unknown function", function: "NoSuchFunction", body: queueDoc, status: http.StatusNotFound, detail: `no function is named "NoSuchFunction"`},
		{name: "the readiness probe", method: http.MethodGet, function: "", status: http.StatusNotFound},
		{name: "a nested path", function: "ScheduleDrone/extra", body: queueDoc, status: http.StatusNotFound},
		{name: "an invocation must be POSTed", method: http.MethodGet, function: "ScheduleDrone", status: http.StatusMethodNotAllowed},
		{name: "truncated JSON", function: "ScheduleDrone", body: raw(`{"Data":{"msg":`), status: http.StatusBadRequest, detail: "not a JSON envelope"},
		{name: "not an object", function: "ScheduleDrone", body: raw(`[]`), status: http.StatusBadRequest, detail: "not a JSON envelope"},
		{name: "an empty body", function: "Echo", body: raw(``), status: http.StatusBadRequest, detail: "not a JSON envelope"},
		{name: "no Data", function: "ScheduleDrone", body: raw(`{"Metadata":{}}`), status: http.StatusBadRequest, detail: "no Data object"},
		{name: "Data is not an object", function: "ScheduleDrone", body: raw(`{"Data":"msg"}`), status: http.StatusBadRequest, detail: "not a JSON envelope"},
		{name: "queue: no trigger data", function: "ScheduleDrone", body: raw(`{"Data":{"message":"{}"},"Metadata":{"MessageId":"\"m\""}}`), status: http.StatusBadRequest, detail: "missing Data.msg"},
		{
			name: "queue: no message id", function: "ScheduleDrone", status: http.StatusBadRequest, detail: "missing Metadata.MessageId",
			body: func(t *testing.T) []byte { return patch(t, queueDoc(t), "Metadata", "MessageId", nil) },
		},
		{name: "http: no trigger data", function: "Echo", body: raw(`{"Data":{},"Metadata":{}}`), status: http.StatusBadRequest, detail: "missing Data.req"},
		{name: "http: request is not an object", function: "Echo", body: raw(`{"Data":{"req":"GET /api/echo/1"}}`), status: http.StatusBadRequest, detail: "not an HTTP request object"},
		{
			name: "http: no method", function: "Echo", status: http.StatusBadRequest, detail: "missing Method",
			body: func(t *testing.T) []byte { return patch(t, httpDoc(t), "Data.req", "Method", nil) },
		},
		{
			name: "http: Query neither object nor string", function: "Echo", status: http.StatusBadRequest, detail: "bad Query",
			body: func(t *testing.T) []byte { return patch(t, httpDoc(t), "Data.req", "Query", 5) },
		},
		{
			name: "http: a header value that is not a string", function: "Echo", status: http.StatusBadRequest, detail: "bad Headers.Accept",
			body: func(t *testing.T) []byte {
				return patch(t, httpDoc(t), "Data.req", "Headers", map[string]any{"Accept": []any{1}})
			},
		},
		{
			name: "an envelope over the limit", function: "ScheduleDrone", status: http.StatusRequestEntityTooLarge, detail: "exceeds",
			body: raw(`{"Data":{"msg":"` + strings.Repeat("a", maxInvocationBytes) + `"}}`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			var body []byte
			if tt.body != nil {
				body = tt.body(t)
			}
			rec := &recorder{ResponseRecorder: httptest.NewRecorder(), ev: f.ev}
			f.h.ServeHTTP(rec, newRequest(method, "/"+tt.function, body))

			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			p := problemOf(t, rec)
			assert.Contains(t, p.Detail, tt.detail)
			if tt.status == http.StatusMethodNotAllowed {
				assert.Equal(t, http.MethodPost, rec.Header().Get("Allow"))
			}
			assert.Empty(t, f.delivered())
			assert.Empty(t, f.pub.published())
		})
	}
}

func raw(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }

func TestFunctionNamesIgnoreCase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	decodeReply(t, f.invoke("scheduledrone", "inv-case", golden(t, "servicebus_double_encoded.json")))
	assert.Len(t, f.delivered(), 1)
}

// transient is a step that fails as a throttled store does.
func transient(*ports.Delivered) ([]ports.Message, error) {
	return nil, domain.Unavailable(errors.New("429 from the store"), "store unavailable")
}

// TestTransientFailuresAreRetriedLater: the host would redeliver an
// abandoned message at once, so each transient failure schedules a copy with
// a longer delay, under a new id, and completes the message it was.
func TestTransientFailuresAreRetriedLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t, transient)
	doc := golden(t, "servicebus_double_encoded.json")

	rep := decodeReply(t, f.invoke("ScheduleDrone", "inv-1", doc))
	require.Len(t, f.pub.published(), 1)
	first := f.pub.published()[0]
	require.Len(t, first, 1)
	assert.Contains(t, rep.Logs[len(rep.Logs)-1], "retry 1 of 8")

	// The host delivers the copy when it is due: a new message, delivered once.
	copyDoc := patch(t, doc, "Metadata", "MessageId", jsonQuoted(first[0].ID))
	copyDoc = patch(t, copyDoc, "Metadata", "DeliveryCount", "1")
	decodeReply(t, f.invoke("ScheduleDrone", "inv-2", copyDoc))
	require.Len(t, f.pub.published(), 2)
	second := f.pub.published()[1]
	require.Len(t, second, 1)

	assert.Equal(t, "d-0042.ingest:redelivery-1", first[0].ID)
	assert.Equal(t, "d-0042.ingest:redelivery-2", second[0].ID, "each retry has an id of its own, so duplicate detection keeps it")
	for _, m := range []ports.Message{first[0], second[0]} {
		assert.Equal(t, topology.QueueDeliveryRequests, m.Queue)
		assert.Equal(t, envelopeBody, string(m.Body))
		assert.Equal(t, "corr-7f3a", m.CorrelationID)
		assert.Equal(t, "delivery", m.Operation)
	}
	d1, d2 := first[0].NotBefore.Sub(fixtureNow), second[0].NotBefore.Sub(fixtureNow)
	assert.Equal(t, 2*time.Second, d1)
	assert.Greater(t, d2, d1, "the delays grow")

	got := f.delivered()
	require.Len(t, got, 2)
	assert.Equal(t, 3, got[0].DeliveryCount, "the golden message's own count")
	assert.Equal(t, 2, got[1].DeliveryCount, "the copy's one delivery plus the attempt before it")
}

func TestRetriesUsedUpLeaveTheMessageToServiceBus(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, transient, Options{Retry: RetryPolicy{First: time.Second, Max: time.Minute, Attempts: 2}})
	doc := patch(t, golden(t, "servicebus_double_encoded.json"), "Metadata", "MessageId", jsonQuoted("d-0042.ingest:redelivery-2"))
	rec := f.invoke("ScheduleDrone", "inv-last", doc)
	require.Equal(t, http.StatusInternalServerError, rec.Code, "a non-2xx lets the broker's maxDeliveryCount dead-letter it")
	assert.Contains(t, problemOf(t, rec).Detail, "after 2 scheduled retries")
	assert.Empty(t, f.pub.published())
}

func TestRetryDelays(t *testing.T) {
	t.Parallel()
	p := DefaultRetry
	var prev time.Duration
	for n := 1; n <= p.Attempts; n++ {
		d := p.delay(n, 0)
		assert.Greater(t, d, prev, "retry %d", n)
		assert.LessOrEqual(t, d, p.Max, "retry %d", n)
		assert.Less(t, p.delay(n, 0.999), d+d/4+time.Millisecond, "jitter adds at most a quarter")
		prev = d
	}
	assert.Equal(t, 5*time.Minute, RetryPolicy{First: time.Second, Max: 5 * time.Minute, Attempts: 20}.delay(20, 0), "capped at Max")
	assert.Error(t, RetryPolicy{First: time.Minute, Max: time.Second}.check())
}

// jsonQuoted double-encodes a string the way the host sends string metadata.
func jsonQuoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
