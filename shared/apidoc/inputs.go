package apidoc

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// Inputs is what the document says an operation takes besides its path.
type Inputs struct {
	// Query names the query parameters declared on the operation or on
	// its path.
	Query []string
	// Body says the operation declares a request body.
	Body bool
}

// OperationInputs returns, by operationId (the function's name), what each
// operation takes. The document is the API's contract: a parameter it does
// not declare is one the operation does not take, and so is a body.
func OperationInputs() (map[string]Inputs, error) { return operationInputs() }

var operationInputs = sync.OnceValues(func() (map[string]Inputs, error) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]parameter `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	resolve := func(ps []parameter) ([]string, error) {
		var names []string
		for _, p := range ps {
			if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				found, ok := doc.Components.Parameters[ref]
				if !ok {
					return nil, fmt.Errorf("the OpenAPI document refers to parameter %q, which it lacks", ref)
				}
				p = found
			}
			if p.In == "query" {
				names = append(names, p.Name)
			}
		}
		return names, nil
	}
	out := map[string]Inputs{}
	for path, item := range doc.Paths {
		var shared []parameter
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				return nil, fmt.Errorf("the OpenAPI document's %s parameters: %w", path, err)
			}
		}
		for method, raw := range item {
			if method == "parameters" || strings.HasPrefix(method, "x-") || method == "summary" || method == "description" || method == "servers" {
				continue
			}
			var op struct {
				OperationID string          `json:"operationId"`
				Parameters  []parameter     `json:"parameters"`
				RequestBody json.RawMessage `json:"requestBody"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("the OpenAPI document's %s %s: %w", method, path, err)
			}
			names, err := resolve(append(append([]parameter(nil), shared...), op.Parameters...))
			if err != nil {
				return nil, err
			}
			out[op.OperationID] = Inputs{Query: names, Body: len(op.RequestBody) > 0}
		}
	}
	return out, nil
})

type parameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}
