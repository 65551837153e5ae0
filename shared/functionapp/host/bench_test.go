package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// The host codec benchmarks measure what the custom handler adds to every
// invocation on top of the step itself: reading the host's envelope,
// decoding the message or request inside it, and encoding the reply.

func benchGolden(b *testing.B, name string) []byte {
	body, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchDecode measures reading the golden invocation name and decoding it
// with decode, which fails on what it should not have made.
func benchDecode(b *testing.B, name string, decode func(*invocation) error) {
	body := benchGolden(b, name)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var inv invocation
		if err := json.Unmarshal(body, &inv); err != nil {
			b.Fatal(err)
		}
		if err := decode(&inv); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeQueueInvocation decodes a Service Bus invocation in each
// of the encodings hosts send.
func BenchmarkDecodeQueueInvocation(b *testing.B) {
	for _, name := range []string{"servicebus_base64_body.json", "servicebus_object_body.json", "servicebus_double_encoded.json"} {
		b.Run(name, func(b *testing.B) {
			benchDecode(b, name, func(inv *invocation) error {
				msg, _, err := decodeMessage(inv.Data["msg"], inv.Metadata, true, "delivery-requests")
				if err == nil && msg.ID == "" {
					err = errors.New("a message without an id")
				}
				return err
			})
		})
	}
}

// BenchmarkDecodeHTTPInvocation decodes an HTTP invocation into the
// request a handler sees.
func BenchmarkDecodeHTTPInvocation(b *testing.B) {
	benchDecode(b, "http_post_body_object.json", func(inv *invocation) error {
		req, err := decodeHTTPRequest(inv.Data["req"])
		if err == nil && req.Method != http.MethodPost {
			err = fmt.Errorf("method %s, want POST", req.Method)
		}
		return err
	})
}

// BenchmarkEncodeReply encodes the reply to an HTTP invocation: the
// response as an output binding, headers and all.
func BenchmarkEncodeReply(b *testing.B) {
	resp := functionapp.JSON(http.StatusAccepted, map[string]any{"deliveryId": "d-0042", "trackingId": "T0042", "ownerId": "owner-1"})
	resp.Header.Set("Location", "/api/deliveries/d-0042")
	b.ReportAllocs()
	for b.Loop() {
		out := httpOutput{StatusCode: "202", Body: string(resp.Body), Headers: map[string]string{}}
		for k, vs := range resp.Header {
			out.Headers[k] = vs[0]
		}
		rec := httptest.NewRecorder()
		writeReply(rec, reply{Outputs: map[string]any{"res": out}, Logs: []string{"POST /api/deliveryrequests answered 202"}})
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkQueueInvocation is a whole queue invocation through the
// handler, with a step that does nothing and publishes one message: the
// custom handler's own cost per message.
func BenchmarkQueueInvocation(b *testing.B) {
	body := benchGolden(b, "servicebus_base64_body.json")
	out := []ports.Message{{ID: "d-0042:next", Queue: "drone-scheduled", Body: []byte(`{}`)}}
	reg := functionapp.Registry{"ScheduleDrone": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) { return out, nil }}}
	h, err := New(reg, testFunctions()[1:], discardPublisher{}, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/ScheduleDrone", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, ...ports.Message) error { return nil }
