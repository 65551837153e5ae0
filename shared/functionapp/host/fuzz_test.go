package host

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// The fuzz targets feed the decoders whatever a host, or something posing
// as one, might send. Properties: no panic, and what is accepted, sent
// again in the shape current hosts use, decodes to the same thing. `make
// fuzz` runs them; what they find lands in testdata/fuzz and runs with the
// package's tests from then on.

func goldenSeeds(f *testing.F, prefix string) {
	files, err := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden %s*.json files: %v", prefix, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// plainRequest is what the HTTP decoder makes of a request, in a form
// reflect.DeepEqual can compare.
type plainRequest struct {
	Method string
	Path   string
	Params map[string]string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// canonicalHTTP is req as a current host would send it.
func canonicalHTTP(req *plainRequest) []byte {
	u := url.URL{Scheme: "https", Host: "app.example", Path: req.Path}
	b, err := json.Marshal(map[string]any{"Data": map[string]any{"req": map[string]any{
		"Url": u.String(), "Method": req.Method, "Query": req.Query, "Headers": req.Header,
		"Params": req.Params, "Body": string(req.Body), "Identities": []any{},
	}}, "Metadata": map[string]any{}})
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzDecodeHTTPInvocation(f *testing.F) {
	goldenSeeds(f, "http_")
	f.Add([]byte(`{"Data":{"req":{"Url":"/api/x?a=1&a=2","Method":"get","Query":"{\"a\":[\"1\"]}","Headers":{"X":"y"},"Params":{"id":42},"Body":null}}}`))
	f.Add([]byte(`{"Data":{"req":{"Url":"%zz","Method":"GET"}}}`))
	f.Add([]byte(`{"Data":{"req":{"Method":"POST","Params":{"id":"\"abc\""},"Body":"{\"a\":1}"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		inv, err := parseInvocation(body)
		if err != nil {
			return
		}
		raw, ok := binding(inv.Data, "req")
		if !ok || isNull(raw) {
			return
		}
		req, err := decodeHTTPRequest(raw)
		if err != nil {
			return
		}
		first := plainRequest{req.Method, req.Path, req.Params, req.Query, req.Header, req.Body}
		inv2, err := parseInvocation(canonicalHTTP(&first))
		if err != nil {
			t.Fatalf("re-encoding of %q: %v", body, err)
		}
		raw2, _ := binding(inv2.Data, "req")
		again, err := decodeHTTPRequest(raw2)
		if err != nil {
			t.Fatalf("accepted %q but not its canonical form %s: %v", body, canonicalHTTP(&first), err)
		}
		second := plainRequest{again.Method, again.Path, again.Params, again.Query, again.Header, again.Body}
		if len(first.Body) == 0 {
			first.Body, second.Body = nil, nil
		}
		if !reflect.DeepEqual(first, second) {
			t.Fatalf("%q decodes to\n%+v\nbut its canonical form %s to\n%+v", body, first, canonicalHTTP(&first), second)
		}
	})
}

// canonicalQueue is msg as a current host sends it to a binary trigger:
// the body in base64, scalars double-encoded.
func canonicalQueue(msg *ports.Delivered) (json.RawMessage, map[string]json.RawMessage) {
	enc := func(v any) json.RawMessage {
		inner, _ := json.Marshal(v)
		outer, _ := json.Marshal(string(inner))
		return outer
	}
	md := map[string]json.RawMessage{
		"MessageId":      enc(msg.ID),
		"CorrelationId":  enc(msg.CorrelationID),
		"DeliveryCount":  json.RawMessage(strconv.Quote(strconv.Itoa(msg.DeliveryCount))),
		"SequenceNumber": json.RawMessage(strconv.Quote(strconv.FormatInt(msg.SequenceNumber, 10))),
		"LockToken":      enc(msg.LockToken),
	}
	if !msg.EnqueuedAt.IsZero() {
		md["EnqueuedTimeUtc"] = enc(msg.EnqueuedAt.Format(time.RFC3339Nano))
	}
	props, _ := json.Marshal(map[string]string{"operation": msg.Operation,
		"DeadLetterReason": msg.DeadLetterReason, "DeadLetterErrorDescription": msg.DeadLetterDescription})
	md["ApplicationProperties"] = props
	body, _ := json.Marshal(base64.StdEncoding.EncodeToString(msg.Body))
	return body, md
}

func FuzzDecodeQueueInvocation(f *testing.F) {
	goldenSeeds(f, "servicebus_")
	f.Add([]byte(`{"Data":{"msg":"{oops"},"Metadata":{"MessageId":"m","DeliveryCount":"x","EnqueuedTimeUtc":"\"yesterday\"","ApplicationProperties":"[1]"}}`))
	f.Add([]byte(`{"Data":{"msg":null},"Metadata":{"MessageId":"\"\\\"m\\\"\""}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		inv, err := parseInvocation(body)
		if err != nil {
			return
		}
		raw, ok := binding(inv.Data, "msg")
		if !ok {
			return
		}
		for _, binary := range []bool{true, false} {
			msg, _, err := decodeMessage(raw, inv.Metadata, binary, "q")
			if err != nil {
				continue
			}
			if msg.ID == "" {
				t.Fatalf("accepted a message without an id from %q", body)
			}
			// Whatever the body, the step's decoder must turn it into a
			// value or a permanent failure, never a panic or a retry.
			if _, err := wire.ParseEnvelope(msg.Body); err != nil && !domain.IsPermanent(err) {
				t.Fatalf("message body %q: %v is not permanent", msg.Body, err)
			}
			if _, err := wire.ParseTelemetryMessage(msg.Body); err != nil && !domain.IsPermanent(err) {
				t.Fatalf("telemetry body %q: %v is not permanent", msg.Body, err)
			}
			rawBody, md := canonicalQueue(msg)
			again, _, err := decodeMessage(rawBody, md, true, "q")
			if err != nil {
				t.Fatalf("accepted %q but not its canonical form: %v", body, err)
			}
			if len(msg.Body) == 0 {
				msg.Body, again.Body = nil, nil
			}
			if !reflect.DeepEqual(msg, again) {
				t.Fatalf("%q (binary %v) decodes to\n%+v\nbut its canonical form to\n%+v", body, binary, msg, again)
			}
		}
	})
}
