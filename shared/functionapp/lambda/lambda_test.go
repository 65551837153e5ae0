package lambda

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
)

// testFunctions is what the function.json files of a small app declare.
func testFunctions() []functionapp.FunctionConfig {
	http := func(name, route string, methods ...string) functionapp.FunctionConfig {
		return functionapp.FunctionConfig{Name: name, Bindings: []functionapp.Binding{
			{Type: "httpTrigger", Direction: "in", Name: "req", AuthLevel: "function", Methods: methods, Route: route},
			{Type: "http", Direction: "out", Name: "res"},
		}}
	}
	return []functionapp.FunctionConfig{
		http("Echo", "echo/{id}", "get", "post"),
		http("Blob", "blob"),
		{Name: "ScheduleDrone", Bindings: []functionapp.Binding{
			{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "delivery-requests", Connection: "ServiceBusConnection"},
		}},
		{Name: "UpdatePackage", Bindings: []functionapp.Binding{
			{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "drone-scheduled", Connection: "ServiceBusConnection"},
		}},
	}
}

// echoed is what Echo answers, so tests see what the handler got.
type echoed struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Params map[string]string `json:"params"`
	Query  url.Values        `json:"query"`
	Body   string            `json:"body"`
	Header http.Header       `json:"header"`
}

func echo(_ context.Context, req *functionapp.Request) *functionapp.Response {
	status := http.StatusOK
	if req.Method == http.MethodPost {
		status = http.StatusCreated
	}
	resp := functionapp.JSON(status, echoed{Method: req.Method, Path: req.Path, Params: req.Params, Query: req.Query, Body: string(req.Body), Header: req.Header})
	resp.Header.Set("Location", "/api/echo/"+req.Params["id"])
	resp.Header["Vary"] = []string{"Accept", "Accept-Encoding"}
	resp.Header.Add("Set-Cookie", "a=1")
	resp.Header.Add("Set-Cookie", "b=2")
	return resp
}

var png = []byte{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff}

func blob(context.Context, *functionapp.Request) *functionapp.Response {
	return &functionapp.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"image/png"}}, Body: png}
}

type fakePublisher struct {
	mu   sync.Mutex
	err  error
	sent []ports.Message
}

func (p *fakePublisher) Publish(_ context.Context, msgs ...ports.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.sent = append(p.sent, msgs...)
	return nil
}

func (p *fakePublisher) published() []ports.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ports.Message(nil), p.sent...)
}

// delayingPublisher is a publisher that can also hide records, as the SQS
// bus does.
type delayingPublisher struct {
	fakePublisher
	delays []string // queue|receipt handle|until
}

func (p *delayingPublisher) Delay(_ context.Context, m *ports.Delivered) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delays = append(p.delays, m.Queue+"|"+m.LockToken+"|"+m.NotBefore.UTC().Format(time.RFC3339Nano))
	return nil
}

// deadLetteringPublisher is a publisher that can also dead-letter a
// record, as the SQS bus does; err fails both.
type deadLetteringPublisher struct {
	fakePublisher
	dead []string // queue|receipt handle|reason|description
}

func (p *deadLetteringPublisher) DeadLetter(_ context.Context, m *ports.Delivered, reason, description string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.dead = append(p.dead, strings.Join([]string{m.Queue, m.LockToken, reason, description}, "|"))
	return nil
}

type fixture struct {
	h   *Handler
	pub ports.Publisher

	mu  sync.Mutex
	got map[string]*ports.Delivered // by message id
	// stuckUntil is the deadline the last "stuck" step was given.
	stuckUntil time.Time
}

// step answers by the message body: "ok" produces a message, "transient"
// and "permanent" fail so, "panic" panics.
func (f *fixture) step(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	f.mu.Lock()
	f.got[msg.ID] = msg
	f.mu.Unlock()
	switch string(msg.Body) {
	case "stuck": // a dependency that never answers, until the context ends
		f.mu.Lock()
		f.stuckUntil, _ = ctx.Deadline()
		f.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	case "ok":
		return []ports.Message{{ID: msg.ID + ":next", Queue: "drone-scheduled", Body: []byte("next"), CorrelationID: msg.CorrelationID}}, nil
	case "transient":
		return nil, errors.New("the store is busy")
	case "permanent":
		return nil, &domain.Permanent{Err: errors.New("no such delivery")}
	case "panic":
		panic("boom")
	}
	return nil, nil
}

func (f *fixture) delivered(id string) *ports.Delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[id]
}

func newFixture(t *testing.T, pub ports.Publisher, opts Options) *fixture {
	t.Helper()
	f := &fixture{pub: pub, got: map[string]*ports.Delivered{}}
	reg := functionapp.Registry{
		"Echo": {HTTP: echo}, "Blob": {HTTP: blob},
		"ScheduleDrone": {Queue: f.step}, "UpdatePackage": {Queue: f.step},
	}
	h, err := New(reg, testFunctions(), pub, logctx.NewLogger(testWriter{t}, slog.LevelDebug), opts)
	require.NoError(t, err)
	f.h = h
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func invoke[T any](t *testing.T, h *Handler, event any) T {
	t.Helper()
	raw, err := json.Marshal(event)
	require.NoError(t, err)
	out, err := h.Invoke(context.Background(), raw)
	require.NoError(t, err)
	// What lambda.Start would send back, decoded as the caller sees it.
	b, err := json.Marshal(out)
	require.NoError(t, err)
	var v T
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func httpEvent(method, rawPath, query, body string) events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: rawPath, RawQueryString: query,
		Headers: map[string]string{"content-type": "application/json", "accept": "application/json, text/plain"},
		Body:    body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: "$default", Stage: "$default", RequestID: "req-1", DomainName: "abc.execute-api.eu-west-1.amazonaws.com",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: rawPath, Protocol: "HTTP/1.1", SourceIP: "198.51.100.7"},
		},
	}
}

func TestHTTPEventReachesItsRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{})
	e := httpEvent(http.MethodPost, "/api/echo/42", "units=km&units=mi", `{"a":1}`)
	e.Cookies = []string{"session=x", "theme=dark"}
	resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, e)

	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
	assert.False(t, resp.IsBase64Encoded, "JSON travels as text")
	assert.Equal(t, "application/json", resp.Headers["Content-Type"])
	assert.Equal(t, "/api/echo/42", resp.Headers["Location"])
	assert.Equal(t, "Accept, Accept-Encoding", resp.Headers["Vary"], "repeated values are joined, as payload 2.0 wants")
	assert.Equal(t, []string{"a=1", "b=2"}, resp.Cookies)
	assert.NotContains(t, resp.Headers, "Set-Cookie")
	var got echoed
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &got))
	assert.Equal(t, http.MethodPost, got.Method)
	assert.Equal(t, "/api/echo/42", got.Path)
	assert.Equal(t, map[string]string{"id": "42"}, got.Params)
	assert.Equal(t, url.Values{"units": {"km", "mi"}}, got.Query)
	assert.Equal(t, `{"a":1}`, got.Body)
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, "session=x; theme=dark", got.Header.Get("Cookie"))
}

func TestHTTPEventDetails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{})

	t.Run("base64 body", func(t *testing.T) {
		e := httpEvent(http.MethodPost, "/api/echo/1", "", base64.StdEncoding.EncodeToString([]byte(`{"b":2}`)))
		e.IsBase64Encoded = true
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, e)
		var got echoed
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &got))
		assert.Equal(t, `{"b":2}`, got.Body)
	})
	t.Run("named stage", func(t *testing.T) {
		e := httpEvent(http.MethodGet, "/prod/api/echo/7", "", "")
		e.RequestContext.Stage = "prod"
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, e)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Contains(t, resp.Body, `"path":"/api/echo/7"`)
	})
	t.Run("escaped path parameter", func(t *testing.T) {
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodGet, "/api/echo/a%2Fb", "", ""))
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Contains(t, resp.Body, `"params":{"id":"a/b"}`)
	})
	t.Run("binary response", func(t *testing.T) {
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodGet, "/api/blob", "", ""))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.True(t, resp.IsBase64Encoded)
		body, err := base64.StdEncoding.DecodeString(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, png, body)
	})
	t.Run("unknown route", func(t *testing.T) {
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodGet, "/api/nothing", "", ""))
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Equal(t, "application/problem+json", resp.Headers["Content-Type"])
	})
	t.Run("wrong method", func(t *testing.T) {
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodDelete, "/api/echo/1", "", ""))
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, "application/problem+json", resp.Headers["Content-Type"])
		assert.Contains(t, resp.Headers["Allow"], "POST")
	})
	t.Run("body too large", func(t *testing.T) {
		big := make([]byte, functionapp.MaxBodyBytes+1)
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodPost, "/api/echo/1", "", string(big)))
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})
	t.Run("bad base64", func(t *testing.T) {
		e := httpEvent(http.MethodPost, "/api/echo/1", "", "%%%")
		e.IsBase64Encoded = true
		resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, e)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
}

func sqsRecord(queue, id, body string, receiveCount int) events.SQSMessage {
	str := func(s string) events.SQSMessageAttribute {
		return events.SQSMessageAttribute{StringValue: &s, DataType: "String"}
	}
	return events.SQSMessage{
		MessageId: "sqs-" + id, ReceiptHandle: "rh-" + id, Body: body,
		Attributes: map[string]string{
			"ApproximateReceiveCount": strconv.Itoa(receiveCount), "SentTimestamp": "1764169200000",
			"SequenceNumber": "18849496460467696128", "MessageGroupId": id, "MessageDeduplicationId": id,
		},
		MessageAttributes: map[string]events.SQSMessageAttribute{
			sqsmsg.AttrID: str(id), sqsmsg.AttrCorrelationID: str("corr-" + id), sqsmsg.AttrOperation: str("delivery"),
		},
		EventSource:    "aws:sqs",
		EventSourceARN: "arn:aws:sqs:eu-west-1:123456789012:" + sqsmsg.QueueName("", queue),
		AWSRegion:      "eu-west-1",
	}
}

func failures(resp events.SQSEventResponse) []string {
	out := []string{}
	for _, f := range resp.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	sort.Strings(out)
	return out
}

func TestSQSBatchReportsOnlyTheRecordsToRetry(t *testing.T) {
	t.Parallel()
	pub := &fakePublisher{}
	f := newFixture(t, pub, Options{})
	event := events.SQSEvent{Records: []events.SQSMessage{
		sqsRecord("delivery-requests", "d1:requested", "ok", 1),
		sqsRecord("delivery-requests", "d2:requested", "transient", 2),
		sqsRecord("delivery-requests", "d3:requested", "permanent", 1),
		sqsRecord("drone-scheduled", "d4:drone-scheduled", "panic", 1),
	}}
	resp := invoke[events.SQSEventResponse](t, f.h, event)

	assert.Equal(t, []string{"sqs-d2:requested", "sqs-d3:requested", "sqs-d4:drone-scheduled"}, failures(resp),
		"transient failures and panics are retried; the permanent failure, with no way to dead-letter it, stays for the redrive policy")
	sent := pub.published()
	require.Len(t, sent, 1, "only the successful step's output is published")
	assert.Equal(t, "d1:requested:next", sent[0].ID)

	m := f.delivered("d1:requested")
	require.NotNil(t, m)
	assert.Equal(t, "delivery-requests", m.Queue)
	assert.Equal(t, "corr-d1:requested", m.CorrelationID)
	assert.Equal(t, "delivery", m.Operation)
	assert.Equal(t, 1, m.DeliveryCount)
	assert.Equal(t, "rh-d1:requested", m.LockToken)
	assert.Equal(t, 2, f.delivered("d2:requested").DeliveryCount)
	assert.NotNil(t, f.delivered("d4:drone-scheduled"), "routed by the queue in the event source ARN")
}

// A record that can never succeed is moved to the dead-letter queue with
// its reason, as the standalone runtime moves one, and reported processed;
// if the move fails it stays, for the redrive policy.
func TestSQSPermanentFailureIsDeadLettered(t *testing.T) {
	t.Parallel()
	pub := &deadLetteringPublisher{}
	h := newFixture(t, pub, Options{}).h
	resp := invoke[events.SQSEventResponse](t, h, events.SQSEvent{Records: []events.SQSMessage{
		sqsRecord("delivery-requests", "d1:requested", "ok", 1), sqsRecord("delivery-requests", "d3:requested", "permanent", 1)}})
	assert.Empty(t, failures(resp), "d3 is dead-lettered, so Lambda may delete it")
	assert.Equal(t, []string{"delivery-requests|rh-d3:requested|ProcessingFailed|permanent: no such delivery"}, pub.dead)

	pub.err = errors.New("SQS is down")
	resp = invoke[events.SQSEventResponse](t, h, events.SQSEvent{Records: []events.SQSMessage{sqsRecord("delivery-requests", "d5:requested", "permanent", 1)}})
	assert.Equal(t, []string{"sqs-d5:requested"}, failures(resp), "not moved: it stays for the redrive policy")
}

func TestSQSPublishFailureRetriesTheRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{err: errors.New("SQS is down")}, Options{})
	resp := invoke[events.SQSEventResponse](t, f.h, events.SQSEvent{Records: []events.SQSMessage{sqsRecord("delivery-requests", "d1:requested", "ok", 1)}})
	assert.Equal(t, []string{"sqs-d1:requested"}, failures(resp))
}

func TestSQSEarlyRecordIsHiddenNotRun(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	due := now.Add(42 * time.Second)
	early := sqsRecord("delivery-requests", "d1:retry-1", "ok", 1)
	s := due.Format(time.RFC3339Nano)
	early.MessageAttributes[sqsmsg.AttrNotBefore] = events.SQSMessageAttribute{StringValue: &s, DataType: "String"}
	onTime := sqsRecord("delivery-requests", "d2:requested", "ok", 1)
	event := events.SQSEvent{Records: []events.SQSMessage{early, onTime}}

	pub := &delayingPublisher{}
	f := newFixture(t, pub, Options{Now: func() time.Time { return now }})
	resp := invoke[events.SQSEventResponse](t, f.h, event)
	assert.Equal(t, []string{"sqs-d1:retry-1"}, failures(resp), "the early record stays on the queue")
	assert.Nil(t, f.delivered("d1:retry-1"), "the step does not run early")
	assert.NotNil(t, f.delivered("d2:requested"))
	assert.Equal(t, []string{"delivery-requests|rh-d1:retry-1|" + s}, pub.delays)

	// Without a way to hide it, it still does not run; SQS brings it back.
	plain := newFixture(t, &fakePublisher{}, Options{Now: func() time.Time { return now }})
	resp = invoke[events.SQSEventResponse](t, plain.h, events.SQSEvent{Records: []events.SQSMessage{early}})
	assert.Equal(t, []string{"sqs-d1:retry-1"}, failures(resp))
	assert.Nil(t, plain.delivered("d1:retry-1"))

	// Once due, it runs.
	late := newFixture(t, &delayingPublisher{}, Options{Now: func() time.Time { return due }})
	resp = invoke[events.SQSEventResponse](t, late.h, events.SQSEvent{Records: []events.SQSMessage{early}})
	assert.Empty(t, failures(resp))
	assert.NotNil(t, late.delivered("d1:retry-1"))
}

// A record stuck on a slow dependency is given up before the invocation's
// deadline, so the invocation still answers with its partial batch
// response: a function that times out has its whole batch retried, the
// records that succeeded too (their webhooks and e-mails sent again).
func TestSQSStuckRecordIsGivenUpBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{})
	event := events.SQSEvent{Records: []events.SQSMessage{
		sqsRecord("delivery-requests", "d1:requested", "stuck", 1),
		sqsRecord("delivery-requests", "d2:requested", "ok", 1),
	}}
	out, deadline := invokeWithDeadline(t, f.h, event)
	f.mu.Lock()
	stopped := f.stuckUntil
	f.mu.Unlock()
	workStoppedInTime(t, stopped, deadline)
	resp, ok := out.(*events.SQSEventResponse)
	require.True(t, ok, "%T", out)
	assert.Equal(t, []string{"sqs-d1:requested"}, failures(*resp), "only the stuck record is retried")
	assert.NotNil(t, f.delivered("d2:requested"))
}

func TestSQSRecordFromAnUnservedQueueStays(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{})
	resp := invoke[events.SQSEventResponse](t, f.h, events.SQSEvent{Records: []events.SQSMessage{sqsRecord("package-updated", "d1:package-updated", "ok", 1)}})
	assert.Equal(t, []string{"sqs-d1:package-updated"}, failures(resp))

	pinned := newFixture(t, &fakePublisher{}, Options{Function: "ScheduleDrone"})
	resp = invoke[events.SQSEventResponse](t, pinned.h, events.SQSEvent{Records: []events.SQSMessage{
		sqsRecord("delivery-requests", "d1:requested", "ok", 1),
		sqsRecord("drone-scheduled", "d1:drone-scheduled", "ok", 1),
	}})
	assert.Equal(t, []string{"sqs-d1:drone-scheduled"}, failures(resp), "a pinned function serves only its own queue")
	assert.Nil(t, pinned.delivered("d1:drone-scheduled"))
}

func TestSQSRecordQueueNamesWithAPrefix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{QueuePrefix: "prod-"})
	rec := sqsRecord("delivery-requests", "d1:requested", "ok", 1)
	rec.EventSourceARN = "arn:aws:sqs:eu-west-1:123456789012:" + sqsmsg.QueueName("prod-", "delivery-requests")
	resp := invoke[events.SQSEventResponse](t, f.h, events.SQSEvent{Records: []events.SQSMessage{rec}})
	assert.Empty(t, failures(resp))
	require.NotNil(t, f.delivered("d1:requested"))
	assert.Equal(t, "delivery-requests", f.delivered("d1:requested").Queue, "the port sees its own queue name")
}

func TestPinnedFunctionServesOnlyItsRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{Function: "Blob"})
	resp := invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodGet, "/api/blob", "", ""))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp = invoke[events.APIGatewayV2HTTPResponse](t, f.h, httpEvent(http.MethodGet, "/api/echo/1", "", ""))
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestUnknownEventFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &fakePublisher{}, Options{})
	for _, event := range []string{`{}`, `{"Records":[{"eventSource":"aws:s3"}]}`, `{"requestContext":{"elb":{}}}`, `[1]`} {
		_, err := f.h.Invoke(context.Background(), json.RawMessage(event))
		assert.Error(t, err, event)
	}
}

func TestNewRefusesAnUnknownPinnedFunction(t *testing.T) {
	t.Parallel()
	reg := functionapp.Registry{"Echo": {HTTP: echo}, "Blob": {HTTP: blob}, "ScheduleDrone": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) { return nil, nil }},
		"UpdatePackage": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) { return nil, nil }}}
	_, err := New(reg, testFunctions(), &fakePublisher{}, nil, Options{Function: "Nope"})
	assert.ErrorContains(t, err, "Nope")
	_, err = New(reg, testFunctions(), nil, nil, Options{})
	assert.ErrorContains(t, err, "no publisher")
}

func TestSelectFunction(t *testing.T) {
	t.Parallel()
	fns := testFunctions()
	tests := []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{env: map[string]string{}, want: ""},
		{env: map[string]string{EnvHandler: "bootstrap"}, want: ""},
		{env: map[string]string{EnvHandler: "scheduledrone"}, want: "ScheduleDrone"},
		{env: map[string]string{EnvFunction: "Echo", EnvHandler: "ScheduleDrone"}, want: "Echo"},
		{env: map[string]string{EnvFunction: "Nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			got, err := SelectFunction(fns, func(k string) string { return tt.env[k] })
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
