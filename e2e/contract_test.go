package e2e

// The OpenAPI document is a contract these tests enforce: every request
// they send to the binary's HTTP API and every answer they get is checked
// against shared/apidoc/openapi.json with kin-openapi's openapi3filter, on
// the way through the http.Client they use. An exchange that breaks the
// document is recorded and fails its test when the test ends, naming the
// request, the status and what the validator said. Tests that send
// malformed requests on purpose check only the answers; an answer to a
// request no operation covers must be the runtime's 404 or 405 problem.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/fabrikam/dronedelivery/shared/apidoc"
)

// apiSpec is the document, parsed and validated once, with a router that
// finds the operation a request is for.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
}

var loadSpec = sync.OnceValues(func() (*apiSpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(apidoc.JSON())
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI document: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	return &apiSpec{doc: doc, router: router}, nil
})

// validation is how strictly exchanges are held to the document: an answer
// with a status the operation does not list fails, and so does a body sent
// to an operation that takes none.
var validation = &openapi3filter.Options{
	IncludeResponseStatus:             true,
	RejectWhenRequestBodyNotSpecified: true,
	AuthenticationFunc:                bearerSent,
}

// bearerSent checks that a request carries the credential its operation
// asks for. Every scheme these tests use is a bearer token; whether the
// token is right is for the service to say (401), not the document.
func bearerSent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("these tests do not send %s credentials", in.SecuritySchemeName)
	}
	scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no bearer token in Authorization")
	}
	return nil
}

// checks says what of a test's exchanges is held to the document.
type checks int

const (
	checkAll       checks = iota
	checkResponses        // the requests are malformed on purpose
	checkNone             // the exchanges are not with the API (a route a pinned Lambda function does not serve)
)

// contract records one test's exchanges that break the document.
type contract struct {
	mu       sync.Mutex
	checks   checks
	checked  int
	failures []string
	tally    *tally // where the run's exchanges are counted; nil counts nowhere
}

var contracts sync.Map // testing.TB → *contract

// contractOf returns t's contract, reporting its failures when t ends.
func contractOf(t testing.TB) *contract {
	if c, ok := contracts.Load(t); ok {
		return c.(*contract)
	}
	c, loaded := contracts.LoadOrStore(t, &contract{tally: exercised})
	if !loaded {
		t.Cleanup(func() {
			contracts.Delete(t)
			cc := c.(*contract)
			for _, f := range cc.report() {
				t.Errorf("breaks the OpenAPI document: %s", f)
			}
			cc.mu.Lock()
			t.Logf("%d exchanges held to the OpenAPI document", cc.checked)
			cc.mu.Unlock()
		})
	}
	return c.(*contract)
}

func (c *contract) report() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures
}

func (c *contract) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

// with runs fn with what is checked set to k for t's exchanges, then sets
// it back. Only a test whose requests all go out from fn, one at a time,
// may use it.
func with(t testing.TB, k checks, fn func()) {
	c := contractOf(t)
	c.mu.Lock()
	before := c.checks
	c.checks = k
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.checks = before
		c.mu.Unlock()
	}()
	fn()
}

// sendingMalformed runs fn, whose requests are malformed on purpose: their
// answers are still held to the document.
func sendingMalformed(t testing.TB, fn func()) { with(t, checkResponses, fn) }

// outsideTheAPI runs fn, whose exchanges are not with the API.
func outsideTheAPI(t testing.TB, fn func()) { with(t, checkNone, fn) }

// checkedClient is an http.Client whose exchanges are held to the document
// for t.
func checkedClient(t testing.TB, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &checkedTransport{c: contractOf(t), requests: true, next: http.DefaultTransport}}
}

// malformedClient is an http.Client for requests that are malformed on
// purpose: only the answers are held to the document.
func malformedClient(t testing.TB, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &checkedTransport{c: contractOf(t), next: http.DefaultTransport}}
}

// checkedTransport reads each request and answer whole, hands both to the
// contract and passes the answer on unchanged.
type checkedTransport struct {
	c        *contract
	requests bool // false: the requests are malformed on purpose
	next     http.RoundTripper
}

func (tr *checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var sent []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		sent = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := tr.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err // the process died mid-answer: there is nothing to check
	}
	resp.Body = io.NopCloser(bytes.NewReader(got))
	tr.c.check(req, sent, resp.StatusCode, resp.Header, got, tr.requests)
	return resp, nil
}

// check holds one exchange to the document.
func (c *contract) check(req *http.Request, sent []byte, status int, header http.Header, got []byte, requests bool) {
	c.mu.Lock()
	k := c.checks
	c.mu.Unlock()
	switch k {
	case checkNone:
		return
	case checkResponses:
		requests = false
	}
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
	what := req.Method + " " + req.URL.RequestURI()
	spec, err := loadSpec()
	if err != nil {
		c.fail("%s: %v", what, err)
		return
	}
	ctx := context.Background()
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(bytes.NewReader(sent))
	route, params, err := spec.router.FindRoute(vreq)
	if err != nil {
		c.checkUnrouted(spec, what, err, status, header, got)
		return
	}
	c.tally.add(route.Operation.OperationID, status)
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: validation}
	if requests {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			c.fail("%s (%s): request: %s", what, route.Operation.OperationID, brief(err))
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(got)), Options: validation,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.fail("%s (%s): answer %d: %s\n\t%s", what, route.Operation.OperationID, status, brief(err), clip(got))
	}
}

// tally counts the statuses each operation answered in this run.
type tally struct {
	mu sync.Mutex
	m  map[string]map[int]int
}

var exercised = &tally{m: map[string]map[int]int{}}

func (t *tally) add(op string, status int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[op] == nil {
		t.m[op] = map[int]int{}
	}
	t.m[op][status]++
}

// summary says which operations of the document the run exercised, with
// the statuses they answered, and which it did not.
func (t *tally) summary() string {
	spec, err := loadSpec()
	if err != nil {
		return err.Error()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var seen, unseen []string
	total := 0
	for _, item := range spec.doc.Paths.Map() {
		for _, op := range item.Operations() {
			total++
			statuses := t.m[op.OperationID]
			if len(statuses) == 0 {
				unseen = append(unseen, op.OperationID)
				continue
			}
			codes := make([]int, 0, len(statuses))
			for code := range statuses {
				codes = append(codes, code)
			}
			slices.Sort(codes)
			seen = append(seen, fmt.Sprintf("%s %v", op.OperationID, codes))
		}
	}
	slices.Sort(seen)
	slices.Sort(unseen)
	return fmt.Sprintf("OpenAPI: %d of %d operations exercised: %s; not exercised: %v", len(seen), total, strings.Join(seen, ", "), unseen)
}

// checkUnrouted holds the answer to a request no operation covers: the
// runtime's 404 for a path it does not serve, 405 with Allow for a method a
// path is not served with, both problem documents.
func (c *contract) checkUnrouted(spec *apiSpec, what string, routeErr error, status int, header http.Header, got []byte) {
	want := http.StatusNotFound
	if errors.Is(routeErr, routers.ErrMethodNotAllowed) {
		want = http.StatusMethodNotAllowed
		if header.Get("Allow") == "" {
			c.fail("%s: answer %d without Allow", what, status)
		}
	}
	if status != want {
		c.fail("%s: no operation covers it (%v), yet the answer is %d, not %d\n\t%s", what, routeErr, status, want, clip(got))
		return
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/problem+json" {
		c.fail("%s: answer %d is %q, not a problem document", what, status, header.Get("Content-Type"))
		return
	}
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		c.fail("%s: answer %d: %v", what, status, err)
		return
	}
	if err := spec.doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		c.fail("%s: answer %d is not a Problem: %v\n\t%s", what, status, err, clip(got))
	}
}

// checkLambda holds an HTTP API event and a Lambda function's answer to
// the document, as checkedTransport holds an HTTP exchange.
func checkLambda(t testing.TB, e events.APIGatewayV2HTTPRequest, resp events.APIGatewayV2HTTPResponse) {
	c := contractOf(t)
	url := "https://" + e.RequestContext.DomainName + e.RawPath
	if e.RawQueryString != "" {
		url += "?" + e.RawQueryString
	}
	req, err := http.NewRequest(e.RequestContext.HTTP.Method, url, nil)
	if err != nil {
		c.fail("%s %s: %v", e.RequestContext.HTTP.Method, e.RawPath, err)
		return
	}
	for k, v := range e.Headers {
		req.Header.Set(k, v)
	}
	header := http.Header{}
	for k, v := range resp.Headers {
		header.Set(k, v)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			c.fail("%s %s: the answer's body: %v", req.Method, e.RawPath, err)
			return
		}
	}
	c.check(req, []byte(e.Body), resp.StatusCode, header, body, true)
}

// brief is a validation error without the schema kin-openapi appends to it.
func brief(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\nSchema:"); i > 0 {
		msg = msg[:i]
	}
	return msg
}

// clip shortens a body for a failure message.
func clip(b []byte) string {
	const max = 600
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
