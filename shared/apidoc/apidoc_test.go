package apidoc_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/apidoc"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// load parses the built-in document with kin-openapi and validates it.
func load(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(apidoc.JSON())
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	return doc
}

// httpFunctions reads functions/*/function.json of the repository.
func httpFunctions(t *testing.T) []functionapp.FunctionConfig {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	fns, err := functionapp.LoadFunctions(os.DirFS(root), "functions")
	require.NoError(t, err)
	var out []functionapp.FunctionConfig
	for _, fc := range fns {
		if fc.Trigger().Type == "httpTrigger" {
			out = append(out, fc)
		}
	}
	require.NotEmpty(t, out)
	return out
}

func TestDocumentIsOpenAPI31(t *testing.T) {
	doc := load(t)
	assert.Regexp(t, `^3\.1\.\d+$`, doc.OpenAPI)
	assert.True(t, doc.IsOpenAPI31OrLater())
	assert.NotEmpty(t, doc.Info.Title)
	assert.NotEmpty(t, doc.Info.Version)
}

// operation is one route and method, named by the function serving it.
type operation struct{ method, path, name string }

func (o operation) String() string { return fmt.Sprintf("%s %s (%s)", o.method, o.path, o.name) }

// TestDocumentCoversEveryRoute holds the document to function.json, the
// single source of the routes: every route and method of an HTTP function
// is an operation whose operationId is the function's name, and the
// document has no other operation. Whoever adds, moves or removes a route
// changes the document with it.
func TestDocumentCoversEveryRoute(t *testing.T) {
	doc := load(t)
	var served, documented []operation
	for _, fc := range httpFunctions(t) {
		route := fc.Trigger().Route
		if route == "" {
			route = fc.Name
		}
		methods := fc.Methods()
		require.NotEmpty(t, methods, "%s answers every method; the document cannot list them", fc.Name)
		for _, m := range methods {
			served = append(served, operation{m, functionapp.RoutePattern(functionapp.RoutePrefix, route), fc.Name})
		}
	}
	for path, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			documented = append(documented, operation{m, path, op.OperationID})
		}
	}
	assert.Empty(t, minus(served, documented), "served (functions/*/function.json) but not in the document")
	assert.Empty(t, minus(documented, served), "in the document but served by no function")
}

// minus lists the operations of a that b lacks.
func minus(a, b []operation) []string {
	var out []string
	for _, o := range a {
		if !slices.Contains(b, o) {
			out = append(out, o.String())
		}
	}
	sort.Strings(out)
	return out
}

// TestDocumentStatesWhatEveryEntryPointChecks holds each operation to the
// answers the runtimes give before and around its handler: a body that
// cannot be read (400), the body limit (413), the media-type check (415)
// and panic recovery (500) on every function; the credential check (401) on every function that is not
// anonymous, and no credential on those that are; the standalone rate
// limiter (429) on every function but health. Errors are problem documents.
func TestDocumentStatesWhatEveryEntryPointChecks(t *testing.T) {
	doc := load(t)
	for _, fc := range httpFunctions(t) {
		t.Run(fc.Name, func(t *testing.T) {
			route := fc.Trigger().Route
			item := doc.Paths.Value(functionapp.RoutePattern(functionapp.RoutePrefix, route))
			require.NotNil(t, item, "openapi.json has no path for route %s of %s", route, fc.Name)
			for _, m := range fc.Methods() {
				op := item.GetOperation(m)
				require.NotNil(t, op, "openapi.json has no %s operation on route %s of %s", m, route, fc.Name)
				require.NotNil(t, op.Security, "%s states its credentials, if only none", fc.Name)
				anonymous := strings.EqualFold(fc.Trigger().AuthLevel, "anonymous")
				assert.Equal(t, anonymous, len(*op.Security) == 0, "authLevel %q and the security of %s", fc.Trigger().AuthLevel, fc.Name)
				want := []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusInternalServerError}
				if !anonymous {
					want = append(want, http.StatusUnauthorized, http.StatusServiceUnavailable)
				}
				if fc.Name != "Healthz" && fc.Name != "Readyz" { // never rate limited
					want = append(want, http.StatusTooManyRequests)
				}
				for _, status := range want {
					assert.NotNil(t, op.Responses.Status(status), "%s answers %d", fc.Name, status)
				}
				for code, ref := range op.Responses.Map() {
					if code[0] != '4' && code[0] != '5' {
						continue
					}
					mt := ref.Value.Content.Get("application/problem+json")
					if assert.NotNil(t, mt, "%s %s is a problem document", fc.Name, code) {
						assert.Equal(t, "#/components/schemas/Problem", mt.Schema.Ref, "%s %s", fc.Name, code)
					}
				}
			}
		})
	}
}

// TestProblemSchemaMatchesTheType keeps the Problem schema's fields those
// functionapp.ProblemDetails encodes.
func TestProblemSchemaMatchesTheType(t *testing.T) {
	doc := load(t)
	schema := doc.Components.Schemas["Problem"].Value
	var fields []string
	for name := range schema.Properties {
		fields = append(fields, name)
	}
	sort.Strings(fields)
	assert.Equal(t, []string{"detail", "field", "status", "title", "type"}, fields)
	resp := functionapp.Problem(http.StatusBadRequest, "packageInfo.weight", "must be greater than 0")
	var v any
	require.NoError(t, json.Unmarshal(resp.Body, &v))
	require.NoError(t, schema.VisitJSON(v, openapi3.EnableJSONSchema2020()))
}

// TestDroneSchemaMatchesTheType holds the Drone schema to the drone record
// the fleet endpoints answer with: a field the schema lacks makes every
// strict client refuse the drone (the schema allows no other property).
func TestDroneSchemaMatchesTheType(t *testing.T) {
	schema := load(t).Components.Schemas["Drone"].Value
	require.NotNil(t, schema.AdditionalProperties.Has)
	require.False(t, *schema.AdditionalProperties.Has, "the schema allows no other property")
	typ := reflect.TypeFor[domain.Drone]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		assert.Contains(t, schema.Properties, name, "domain.Drone.%s", typ.Field(i).Name)
	}
}

// TestReferencePage checks that the page lists every operation and every
// schema of the document, and that it loads nothing: no script, no
// stylesheet or image from anywhere, no reference that leaves the page
// except the document itself.
func TestReferencePage(t *testing.T) {
	doc := load(t)
	page, err := apidoc.Reference()
	require.NoError(t, err)
	html := string(page)
	for path, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			assert.Contains(t, html, `id="op-`+op.OperationID+`"`, "%s %s", m, path)
			assert.Contains(t, html, "<code>"+path+"</code>")
		}
	}
	for name := range doc.Components.Schemas {
		assert.Contains(t, html, `id="schema-`+name+`"`)
	}
	for _, forbidden := range []string{"<script", "<link", "<img", "<iframe", "src=", "url(", "@import", "http://", "https://"} {
		assert.NotContains(t, strings.ToLower(html), forbidden)
	}
	for _, href := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		ok := strings.HasPrefix(href[1], "#") || href[1] == "openapi.json"
		assert.True(t, ok, "a link that leaves the page: %s", href[1])
		if id, internal := strings.CutPrefix(href[1], "#"); internal {
			assert.Contains(t, html, `id="`+id+`"`, "a link to nothing")
		}
	}
}
