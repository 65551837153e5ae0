package functionapp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// Stream is a server-sent event stream (text/event-stream, as the HTML
// Living Standard's "Server-sent events" defines it), opened on the first
// write. Every method returns an error once the client has gone.
type Stream interface {
	// Event sends one event of type name (the default "message" when
	// empty) whose data is data; data may not hold a line break.
	Event(name string, data []byte) error
	// Comment sends a comment line, which clients ignore: a keep-alive
	// that tells proxies and the client the connection is still used.
	Comment(text string) error
}

// StreamFunc serves a long-lived answer as server-sent events. It returns
// a Response to answer with instead (an error found before anything was
// sent, say), or nil once it has streamed what it had to; it must return
// soon after ctx ends.
type StreamFunc func(ctx context.Context, req *Request, s Stream) *Response

// StreamWriteWait bounds each write to a stream: a client that has not
// taken an event within it is cut, rather than holding a goroutine and its
// buffers for ever.
const StreamWriteWait = 30 * time.Second

// WithStreams serves a function's Stream, where it has one, instead of its
// HTTP: only a runtime that holds its own connections (the standalone one)
// can, since the Functions host and API Gateway buffer whole answers.
func WithStreams() RouterOption { return func(o *routerOptions) { o.streams = true } }

func serveStream(name string, fn StreamFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := logctx.With(r.Context(), "function", name)
		query, err := ParseQuery(r.URL.RawQuery)
		if err != nil {
			WriteResponse(w, Problem(http.StatusBadRequest, err.Field, err.Detail))
			return
		}
		req := FromHTTP(r, nil)
		req.Query = query
		s := &sseWriter{w: w, rc: http.NewResponseController(w)}
		resp := callStream(ctx, fn, req, s)
		if resp != nil && !s.open {
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			defaultHeaders(resp.Header)
			WriteResponse(w, resp)
		}
	})
}

// callStream runs fn, turning a panic into a 500 problem (or, once the
// stream is open, into its end).
func callStream(ctx context.Context, fn StreamFunc, req *Request, s *sseWriter) (resp *Response) {
	defer func() {
		if r := recover(); r != nil {
			resp = Problem(http.StatusInternalServerError, "", "internal error")
			logPanic(ctx, r)
		}
	}()
	return fn(ctx, req, s)
}

// sseWriter writes server-sent events to an HTTP response.
type sseWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	open bool
}

func (s *sseWriter) start() {
	if s.open {
		return
	}
	s.open = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Proxies that buffer answers (nginx, notably) pass this one through
	// as it comes.
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) write(b []byte) error {
	s.start()
	// The server's WriteTimeout bounds a whole answer; a stream's bound
	// is per write instead.
	if err := s.rc.SetWriteDeadline(time.Now().Add(StreamWriteWait)); err != nil {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) Event(name string, data []byte) error {
	if strings.ContainsAny(name, "\r\n") || strings.ContainsAny(string(data), "\r\n") {
		return fmt.Errorf("server-sent event %q: a line break in its name or data", name)
	}
	var b []byte
	if name != "" {
		b = append(b, "event: "+name+"\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	return s.write(b)
}

func (s *sseWriter) Comment(text string) error {
	if strings.ContainsAny(text, "\r\n") {
		return fmt.Errorf("server-sent comment: a line break")
	}
	return s.write([]byte(": " + text + "\n\n"))
}
