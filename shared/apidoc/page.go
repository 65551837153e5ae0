package apidoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The page is generated from the document rather than written beside it,
// so it cannot say something the document does not. It reads the document
// as plain JSON: the product needs no OpenAPI library to serve it.

// obj is a JSON object of the document.
type obj = map[string]any

// methods are the operations of a path item, in the order the page lists them.
var methods = []string{"get", "put", "post", "patch", "delete"}

type pageData struct {
	Title, Version string
	Intro          template.HTML
	Schemes        []schemeView
	Tags           []tagView
	Common         []responseView
	Schemas        []schemaView
}

type schemeView struct {
	Name, Kind  string
	Description template.HTML
}

type tagView struct {
	Name        string
	Description template.HTML
	Ops         []opView
}

type opView struct {
	Anchor, Method, Path, ID, Summary string
	Description                       template.HTML
	Security                          string
	Params                            []paramView
	Body                              *bodyView
	Responses                         []responseView
}

type paramView struct {
	Name, In    string
	Required    bool
	Type        template.HTML
	Description template.HTML
}

type bodyView struct {
	Required    bool
	Description template.HTML
	Media       []mediaView
}

type mediaView struct {
	Type   string
	Schema template.HTML
}

type responseView struct {
	Status      string
	Common      string // the shared response it is, described once on the page
	Description template.HTML
	Headers     []string
	Media       []mediaView
}

type schemaView struct {
	Name        string
	Description template.HTML
	Type        template.HTML
	Rules       []template.HTML
	Fields      []fieldView
}

type fieldView struct {
	Name        string
	Required    bool
	Deprecated  bool
	Type        template.HTML
	Description template.HTML
}

// renderPage builds the reference page of an OpenAPI document.
func renderPage(doc []byte) ([]byte, error) {
	var d obj
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("read the OpenAPI document: %w", err)
	}
	r := resolver{doc: d}
	info := object(d["info"])
	data := pageData{
		Title:   str(info["title"]),
		Version: str(info["version"]),
		Intro:   prose(str(info["description"])),
	}
	comps := object(d["components"])

	schemes := object(comps["securitySchemes"])
	for _, name := range sortedKeys(schemes) {
		s := object(schemes[name])
		kind := str(s["type"])
		switch kind {
		case "http":
			kind = "Authorization: " + capitalised(str(s["scheme"])) + " <key>"
		case "apiKey":
			kind = str(s["name"]) + " (" + str(s["in"]) + ")"
		}
		data.Schemes = append(data.Schemes, schemeView{Name: name, Kind: kind, Description: prose(str(s["description"]))})
	}

	byTag := map[string][]opView{}
	paths := object(d["paths"])
	for _, p := range sortedKeys(paths) {
		item := object(paths[p])
		for _, m := range methods {
			op, ok := item[m].(obj)
			if !ok {
				continue
			}
			v := opView{
				Anchor: "op-" + str(op["operationId"]), Method: strings.ToUpper(m), Path: p,
				ID: str(op["operationId"]), Summary: str(op["summary"]), Description: prose(str(op["description"])),
				Security: security(op),
			}
			for _, raw := range append(list(item["parameters"]), list(op["parameters"])...) {
				prm := r.follow(object(raw))
				v.Params = append(v.Params, paramView{
					Name: str(prm["name"]), In: str(prm["in"]), Required: prm["required"] == true,
					Type: r.typeOf(object(prm["schema"])), Description: prose(str(prm["description"])),
				})
			}
			if rb := r.follow(object(op["requestBody"])); rb != nil {
				v.Body = &bodyView{Required: rb["required"] == true, Description: prose(str(rb["description"])), Media: r.media(object(rb["content"]))}
			}
			resps := object(op["responses"])
			for _, code := range sortedKeys(resps) {
				rv := r.response(object(resps[code]))
				rv.Status = code
				v.Responses = append(v.Responses, rv)
			}
			for _, t := range list(op["tags"]) {
				byTag[str(t)] = append(byTag[str(t)], v)
			}
		}
	}
	for _, raw := range list(d["tags"]) {
		t := object(raw)
		name := str(t["name"])
		data.Tags = append(data.Tags, tagView{Name: name, Description: prose(str(t["description"])), Ops: byTag[name]})
	}

	common := object(comps["responses"])
	for _, name := range sortedKeys(common) {
		rv := r.response(object(common[name]))
		rv.Status, rv.Common = name, ""
		data.Common = append(data.Common, rv)
	}

	schemas := object(comps["schemas"])
	for _, name := range sortedKeys(schemas) {
		s := object(schemas[name])
		v := schemaView{Name: name, Description: prose(str(s["description"])), Type: r.typeOf(s), Rules: rules(s)}
		props := object(s["properties"])
		required := list(s["required"])
		for _, p := range sortedKeys(props) {
			ps := object(props[p])
			v.Fields = append(v.Fields, fieldView{
				Name: p, Required: slices.Contains(required, any(p)), Deprecated: ps["deprecated"] == true,
				Type: r.typeOf(ps), Description: prose(str(ps["description"])),
			})
		}
		data.Schemas = append(data.Schemas, v)
	}

	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render the reference page: %w", err)
	}
	return b.Bytes(), nil
}

// security says which credentials an operation takes.
func security(op obj) string {
	reqs := list(op["security"])
	if len(reqs) == 0 {
		return "none"
	}
	var names []string
	for _, r := range reqs {
		names = append(names, strings.Join(sortedKeys(object(r)), " and "))
	}
	return strings.Join(names, " or ")
}

// resolver follows references within the document.
type resolver struct{ doc obj }

// follow returns the object a reference names, or o itself.
func (r resolver) follow(o obj) obj {
	for range 8 { // a reference to a reference is allowed; a loop is not followed far
		ref, ok := o["$ref"].(string)
		if !ok {
			return o
		}
		var cur any = r.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = object(cur)[part]
		}
		o = object(cur)
	}
	return o
}

// response describes a response; one of the shared responses is named
// rather than described again.
func (r resolver) response(o obj) responseView {
	var rv responseView
	if ref, ok := o["$ref"].(string); ok && strings.HasPrefix(ref, "#/components/responses/") {
		rv.Common = strings.TrimPrefix(ref, "#/components/responses/")
	}
	o = r.follow(o)
	rv.Description = prose(str(o["description"]))
	rv.Media = r.media(object(o["content"]))
	rv.Headers = sortedKeys(object(o["headers"]))
	return rv
}

func (r resolver) media(content obj) []mediaView {
	var out []mediaView
	for _, mt := range sortedKeys(content) {
		m := object(content[mt])
		var schema template.HTML
		if s, ok := m["schema"].(obj); ok {
			schema = r.typeOf(s)
		}
		out = append(out, mediaView{Type: mt, Schema: schema})
	}
	return out
}

// typeOf describes a schema in a line, linking the named schemas it uses.
func (r resolver) typeOf(s obj) template.HTML {
	if s == nil {
		return ""
	}
	if ref, ok := s["$ref"].(string); ok {
		name := ref[strings.LastIndex(ref, "/")+1:]
		return template.HTML(`<a href="#schema-` + html.EscapeString(name) + `">` + html.EscapeString(name) + `</a>`)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		branches := list(s[k])
		if len(branches) == 0 || requiredOnly(branches) {
			continue // a rule about fields, which rules states
		}
		var parts []string
		for _, b := range branches {
			parts = append(parts, string(r.typeOf(object(b))))
		}
		return template.HTML(strings.Join(parts, " or "))
	}
	if all := list(s["allOf"]); len(all) == 1 {
		return r.typeOf(object(all[0]))
	}
	var t string
	switch v := s["type"].(type) {
	case string:
		t = v
	case []any:
		var ts []string
		for _, x := range v {
			ts = append(ts, str(x))
		}
		t = strings.Join(ts, " or ")
	}
	if t == "" {
		t = "any"
	}
	out := html.EscapeString(t)
	if f := str(s["format"]); f != "" {
		out += " (" + html.EscapeString(f) + ")"
	}
	if t == "array" {
		out += " of " + string(r.typeOf(object(s["items"])))
	}
	if c := constraints(s); c != "" {
		out += ` <span class="rule">` + html.EscapeString(c) + `</span>`
	}
	return template.HTML(out)
}

// constraints lists a schema's bounds and allowed values.
func constraints(s obj) string {
	var c []string
	if e := list(s["enum"]); len(e) > 0 {
		var vs []string
		for _, v := range e {
			vs = append(vs, jsonText(v))
		}
		c = append(c, "one of "+strings.Join(vs, ", "))
	}
	if v, ok := s["const"]; ok {
		c = append(c, "always "+jsonText(v))
	}
	for _, b := range []struct{ key, text string }{
		{"minimum", "≥ "}, {"exclusiveMinimum", "> "}, {"maximum", "≤ "}, {"exclusiveMaximum", "< "},
		{"minLength", "length ≥ "}, {"maxLength", "length ≤ "}, {"minItems", "items ≥ "}, {"maxItems", "items ≤ "},
		{"pattern", "matches "}, {"default", "default "},
	} {
		if v, ok := s[b.key]; ok {
			c = append(c, b.text+jsonText(v))
		}
	}
	return strings.Join(c, "; ")
}

// rules states what an object schema demands beyond its fields.
func rules(s obj) []template.HTML {
	var out []template.HTML
	names := func(branches []any) string {
		var ns []string
		for _, b := range branches {
			for _, f := range list(object(b)["required"]) {
				ns = append(ns, "<code>"+html.EscapeString(str(f))+"</code>")
			}
		}
		return strings.Join(ns, ", ")
	}
	if b := list(s["oneOf"]); len(b) > 0 && requiredOnly(b) {
		out = append(out, template.HTML("Exactly one of "+names(b)+"."))
	}
	if b := list(s["anyOf"]); len(b) > 0 && requiredOnly(b) {
		out = append(out, template.HTML("At least one of "+names(b)+"."))
	}
	if n := object(s["not"]); n != nil {
		out = append(out, template.HTML("Not all of "+names([]any{n})+" together."))
	}
	if v, ok := s["minProperties"]; ok {
		out = append(out, template.HTML("At least "+html.EscapeString(jsonText(v))+" field(s)."))
	}
	if s["additionalProperties"] == false && s["type"] == "object" {
		out = append(out, "Other fields are refused.")
	}
	return out
}

// requiredOnly reports whether every branch of a oneOf or anyOf only
// names required fields.
func requiredOnly(branches []any) bool {
	for _, b := range branches {
		if o := object(b); len(o) != 1 || o["required"] == nil {
			return false
		}
	}
	return true
}

// prose renders a description: paragraphs, with `code` spans.
func prose(s string) template.HTML {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, para := range strings.Split(s, "\n\n") {
		b.WriteString("<p>")
		for i, part := range strings.Split(para, "`") {
			if i%2 == 1 {
				b.WriteString("<code>" + html.EscapeString(part) + "</code>")
			} else {
				b.WriteString(html.EscapeString(part))
			}
		}
		b.WriteString("</p>")
	}
	return template.HTML(b.String())
}

// capitalised turns the scheme "bearer" into "Bearer", as it is sent.
func capitalised(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func object(v any) obj {
	o, _ := v.(obj)
	return o
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func jsonText(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	b, _ := json.Marshal(v) // a value decoded from JSON encodes again
	return string(b)
}

func sortedKeys(o obj) []string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} {{.Version}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}
main{max-width:60rem;margin:0 auto;padding:1rem 1.25rem 4rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin-top:2.5rem;border-bottom:1px solid #d0d7de}
h3{font-size:1.05rem;margin:1.75rem 0 .25rem}
code{font:13px ui-monospace,monospace;background:#f3f4f6;padding:0 .2em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #e5e7eb}
td p{margin:0 0 .3rem}th{font-weight:600;background:#f8fafc}.m{display:inline-block;min-width:4.2em;font:600 12px ui-monospace,monospace;padding:.1em .4em;border-radius:3px;color:#fff;background:#57606a;text-align:center}
.GET{background:#0969da}.POST{background:#1a7f37}.PUT{background:#9a6700}.PATCH{background:#8250df}.DELETE{background:#cf222e}
.rule{color:#57606a;font-size:13px}.req{color:#cf222e;font-size:12px}.dep{color:#9a6700;font-size:12px}
nav ul{columns:2;padding-left:1.2rem}section.op{border-left:3px solid #d0d7de;padding-left:.9rem;margin:1.5rem 0}
</style>
</head>
<body><main>
<h1>{{.Title}} <span class="rule">{{.Version}}</span></h1>
<p>The machine-readable document: <a href="openapi.json"><code>/api/openapi.json</code></a> (OpenAPI 3.1).</p>
{{.Intro}}
<nav><h2>Operations</h2><ul>
{{range .Tags}}{{range .Ops}}<li><span class="m {{.Method}}">{{.Method}}</span> <a href="#{{.Anchor}}"><code>{{.Path}}</code></a> {{.Summary}}</li>
{{end}}{{end}}</ul></nav>
<h2>Credentials</h2>
<table><tr><th>scheme</th><th>sent as</th><th></th></tr>
{{range .Schemes}}<tr><td><code>{{.Name}}</code></td><td><code>{{.Kind}}</code></td><td>{{.Description}}</td></tr>
{{end}}</table>
{{range .Tags}}<h2>{{.Name}}</h2>{{.Description}}
{{range .Ops}}<section class="op" id="{{.Anchor}}">
<h3><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code> {{.Summary}}</h3>
<p class="rule">operation <code>{{.ID}}</code>; credentials: {{.Security}}</p>
{{.Description}}
{{if .Params}}<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>
{{range .Params}}<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>
{{end}}</table>{{end}}
{{with .Body}}<p><b>Body</b>{{if .Required}} <span class="req">required</span>{{else}} (optional){{end}}: {{range .Media}}<code>{{.Type}}</code> {{.Schema}} {{end}}</p>{{.Description}}{{end}}
<table><tr><th>status</th><th>body</th><th>headers</th><th></th></tr>
{{range .Responses}}<tr><td><b>{{.Status}}</b></td>{{if .Common}}<td colspan="3"><a href="#response-{{.Common}}">{{.Common}}</a></td>{{else}}<td>{{range .Media}}<code>{{.Type}}</code> {{.Schema}} {{end}}</td><td>{{range .Headers}}<code>{{.}}</code> {{end}}</td><td>{{.Description}}</td>{{end}}</tr>
{{end}}</table>
</section>
{{end}}{{end}}
<h2>Shared responses</h2>
<table><tr><th>response</th><th>body</th><th>headers</th><th></th></tr>
{{range .Common}}<tr id="response-{{.Status}}"><td><b>{{.Status}}</b></td><td>{{range .Media}}<code>{{.Type}}</code> {{.Schema}} {{end}}</td><td>{{range .Headers}}<code>{{.}}</code> {{end}}</td><td>{{.Description}}</td></tr>
{{end}}</table>
<h2>Schemas</h2>
{{range .Schemas}}<section id="schema-{{.Name}}"><h3>{{.Name}}</h3>{{.Description}}
{{if .Fields}}<table><tr><th>field</th><th>type</th><th></th></tr>
{{range .Fields}}<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}{{if .Deprecated}} <span class="dep">deprecated</span>{{end}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>
{{end}}</table>{{else}}<p>{{.Type}}</p>{{end}}
{{range .Rules}}<p class="rule">{{.}}</p>{{end}}
</section>
{{end}}
</main></body>
</html>
`))
