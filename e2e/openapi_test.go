package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/apidoc"
)

// TestServedOpenAPIDocument reads the document and its reference page from
// the running binary, without credentials: the document is the one in the
// tree, parses with kin-openapi, validates, and declares OpenAPI 3.1.x.
func TestServedOpenAPIDocument(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir())

	resp := call(t, "GET", p.base+"/api/openapi.json", nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, apidoc.JSON(), resp.Body, "the binary serves the document of the tree")
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(resp.Body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	assert.Regexp(t, `^3\.1\.\d+$`, doc.OpenAPI)
	assert.True(t, doc.IsOpenAPI31OrLater())
	assert.NotNil(t, doc.Paths.Find("/api/openapi.json"), "it describes itself")

	page := call(t, "GET", p.base+"/api/docs", nil)
	require.Equal(t, http.StatusOK, page.Status, string(page.Body))
	assert.Equal(t, "text/html; charset=utf-8", page.Header.Get("Content-Type"))
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "default-src 'none'")
	for path, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			assert.Contains(t, string(page.Body), `id="op-`+op.OperationID+`"`, path)
		}
	}
}

// TestContractCatchesBrokenExchanges feeds the checker the end-to-end tests
// use with exchanges that break the document in each way it must notice,
// and one that keeps it, so a checker that passes everything cannot go
// unseen.
func TestContractCatchesBrokenExchanges(t *testing.T) {
	t.Parallel()
	problem := `{"type":"about:blank","title":"Not Found","status":404,"detail":"GET /api/nowhere is not served"}`
	signUp := `{"name":"Fabrikam","contactEmail":"ops@fabrikam.example"}`
	signedUp := `{"accountId":"a","name":"Fabrikam","contactEmail":"ops@fabrikam.example","apiKey":"k","prefix":"p","keyPrefix":"p","webhookSecret":"s"}`
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	created := http.Header{"Content-Type": {"application/json"}, "Location": {"/api/accounts/a"}, "Cache-Control": {"no-store"}}
	cases := []struct {
		name         string
		method, path string
		key, body    string
		status       int
		header       http.Header
		answer       string
		malformed    bool // check the answer only
		broken       bool
	}{
		{name: "a kept exchange", method: "POST", path: "/api/accounts", body: signUp, status: 201, header: created, answer: signedUp},
		{name: "a field the document lacks", method: "GET", path: "/api/healthz", status: 200, header: jsonHeader, answer: `{"status":"ok","uptime":3}`, broken: true},
		{name: "a status the operation does not list", method: "GET", path: "/api/healthz", status: 418, header: jsonHeader, answer: `{}`, broken: true},
		{name: "a required field missing", method: "POST", path: "/api/accounts", body: signUp, status: 201, header: created, answer: strings.Replace(signedUp, `"prefix":"p",`, "", 1), broken: true},
		{name: "a required header missing", method: "POST", path: "/api/accounts", body: signUp, status: 201, header: jsonHeader, answer: signedUp, broken: true},
		{name: "an error that is not a problem", method: "GET", path: "/api/track/x", status: 404, header: jsonHeader, answer: `{"error":"no"}`, broken: true},
		{name: "a request with an unknown field", method: "POST", path: "/api/accounts", body: `{"name":"A","contactEmail":"a@b.example","admin":true}`, status: 201, header: created, answer: signedUp, broken: true},
		{name: "the same request sent as malformed", method: "POST", path: "/api/accounts", body: `{"name":"A","contactEmail":"a@b.example","admin":true}`, status: 201, header: created, answer: signedUp, malformed: true},
		{name: "a business call without a key", method: "GET", path: "/api/deliveries/d-1", status: 404, header: http.Header{"Content-Type": {"application/problem+json"}}, answer: strings.Replace(problem, "GET /api/nowhere is not served", "delivery d-1 not found", 1), broken: true},
		{name: "an unrouted path answered 404", method: "GET", path: "/api/nowhere", status: 404, header: http.Header{"Content-Type": {"application/problem+json"}}, answer: problem},
		{name: "an unrouted path answered 200", method: "GET", path: "/api/nowhere", status: 200, header: jsonHeader, answer: `{}`, broken: true},
		{name: "a method not served, without Allow", method: "DELETE", path: "/api/healthz", status: 405, header: http.Header{"Content-Type": {"application/problem+json"}}, answer: strings.ReplaceAll(problem, "404", "405"), broken: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &contract{}
			if tc.malformed {
				c.checks = checkResponses
			}
			req := httptest.NewRequest(tc.method, "http://127.0.0.1:7071"+tc.path, bytes.NewReader([]byte(tc.body)))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			c.check(req, []byte(tc.body), tc.status, tc.header, []byte(tc.answer), true)
			t.Logf("%q", c.report())
			if tc.broken {
				assert.NotEmpty(t, c.report(), "the checker let it pass")
			} else {
				assert.Empty(t, c.report())
			}
		})
	}
}
