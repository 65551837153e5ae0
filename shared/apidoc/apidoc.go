// Package apidoc holds the OpenAPI 3.1 document of the HTTP API, built into
// the binary, and the reference page generated from it. The document is
// written by hand beside the code it describes; tests hold it to the routes
// of functions/*/function.json, and the end-to-end tests hold every request
// and response they exchange with the binary to it.
package apidoc

import (
	_ "embed"
	"sync"
)

//go:embed openapi.json
var document []byte

// JSON returns the OpenAPI document as served at GET /api/openapi.json.
// Callers must not modify it.
func JSON() []byte { return document }

// Reference returns the HTML reference page generated from the document.
// It is rendered once, on first use.
func Reference() ([]byte, error) { return reference() }

var reference = sync.OnceValues(func() ([]byte, error) { return renderPage(document) })
