// Package host runs the functions as an Azure Functions custom handler: it
// answers the HTTP requests the host forwards unchanged and the invocations
// it wraps in {"Data","Metadata"} envelopes, and settles queue messages the
// only way a custom handler can, through its HTTP status, scheduling a copy
// of a message whose step failed transiently (see RetryPolicy). A Gate
// answers for it while its backend opens.
package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// maxInvocationBytes bounds an invocation envelope. The body inside may be
// base64 (a third larger) or a JSON string escaping every quote (up to twice
// as large), and headers and metadata come on top, so the envelope gets four
// times the body limit.
const maxInvocationBytes = 4 * functionapp.MaxBodyBytes

// function is one configured function with what an invocation of it needs.
type function struct {
	name    string
	trigger functionapp.Binding
	http    functionapp.HTTPFunc
	methods []string // upper case; empty allows every method
	out     string   // the http output binding's name, possibly "$return"
	queue   functionapp.QueueFunc
	qname   string // the trigger's queue, app settings resolved
}

type handler struct {
	router http.Handler
	prefix string // "/api", matched before function names
	fns    map[string]*function
	pub    ports.Publisher
	log    *slog.Logger
	retry  RetryPolicy
	now    func() time.Time
	jitter func() float64 // in [0, 1)
}

// Options tunes a handler; the zero value means the defaults.
type Options struct {
	// Retry says when a message whose step failed transiently is tried
	// again (DefaultRetry when zero).
	Retry RetryPolicy
	// Now tells the time retries are scheduled from (time.Now when nil).
	Now func() time.Time
	// Jitter returns a number in [0, 1) that spreads retries scheduled
	// together (math/rand/v2's Float64 when nil).
	Jitter func() float64
}

// drainTime bounds how long a refused body is read to its end
// (functionapp.WithDrain): 100 MB at a modest 5 MB/s.
const drainTime = 20 * time.Second

// forwardedBodyLimit is the largest body the host forwards: its Kestrel's
// limit, 104,857,600 bytes unless FUNCTIONS_REQUEST_BODY_SIZE_LIMIT sets
// another (ScriptConstants.DefaultMaxRequestBodySize, Program.cs, and
// HttpRequestBodySizeMiddleware in Azure/azure-functions-host).
func forwardedBodyLimit(lookup func(string) (string, bool)) int64 {
	if v, ok := lookup("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"); ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 104857600
}

// New returns the handler for everything the Functions host sends; it
// rejects a configuration the host would run but the registry cannot serve,
// so a deployment fails at start-up rather than on its first message.
func New(reg functionapp.Registry, fns []functionapp.FunctionConfig, pub ports.Publisher, log *slog.Logger, opts Options) (http.Handler, error) {
	reg, log, err := functionapp.Prepare(reg, fns, log)
	if err != nil {
		return nil, err
	}
	router, err := functionapp.NewRouter(reg, fns, functionapp.RoutePrefix, functionapp.WithDrain(forwardedBodyLimit(os.LookupEnv), drainTime), functionapp.WithInvocationIDs())
	if err != nil {
		return nil, err
	}
	if opts.Retry == (RetryPolicy{}) {
		opts.Retry = DefaultRetry
	}
	if err := opts.Retry.check(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	h := &handler{
		router: router,
		prefix: "/" + functionapp.RoutePrefix,
		fns:    make(map[string]*function, len(fns)),
		pub:    pub,
		log:    log,
		retry:  opts.Retry,
		now:    opts.Now,
		jitter: opts.Jitter,
	}
	for _, fc := range fns {
		fn, err := newFunction(fc, reg[fc.Name])
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(fc.Name)
		if key == strings.ToLower(functionapp.RoutePrefix) {
			return nil, fmt.Errorf("function %s: its invocations would be taken for forwarded HTTP requests under /%s", fc.Name, functionapp.RoutePrefix)
		}
		if _, dup := h.fns[key]; dup {
			return nil, fmt.Errorf("function %s is configured twice (the host ignores case)", fc.Name)
		}
		if fn.queue != nil && pub == nil {
			return nil, fmt.Errorf("function %s is queue-triggered but no publisher was given", fc.Name)
		}
		h.fns[key] = fn
	}
	return h, nil
}

func newFunction(fc functionapp.FunctionConfig, f functionapp.Function) (*function, error) {
	fn := &function{name: fc.Name, trigger: *fc.Trigger()}
	switch fn.trigger.Type {
	case "httpTrigger":
		fn.http, fn.methods = f.HTTP, fc.Methods()
		for _, b := range fc.Bindings {
			if b.Type == "http" && strings.EqualFold(b.Direction, "out") {
				fn.out = b.Name
			}
		}
		if fn.out == "" {
			return nil, fmt.Errorf("function %s has no http output binding to carry its response", fc.Name)
		}
	case "serviceBusTrigger":
		fn.queue = f.Queue
		fn.qname = expandSettings(fn.trigger.QueueName, os.LookupEnv)
	}
	return fn, nil
}

// ServeHTTP tells forwarded requests from invocations by path: the host
// forwards only under the route prefix (in whatever case the client wrote
// it, since the host's routes ignore the case of literal segments) and
// invokes at /{FunctionName}.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/"); strings.EqualFold("/"+first, h.prefix) {
		h.router.ServeHTTP(w, r)
		return
	}
	name := strings.TrimPrefix(p, "/")
	fn, ok := h.fns[strings.ToLower(name)]
	if !ok {
		// Also the answer to the host's readiness probe, which any status satisfies.
		functionapp.WriteResponse(w, functionapp.Problem(http.StatusNotFound, "", fmt.Sprintf("no function is named %q", name)))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		functionapp.WriteResponse(w, functionapp.Problem(http.StatusMethodNotAllowed, "", "invocations are POSTed"))
		return
	}
	ctx := logctx.With(r.Context(), "function", fn.name)
	if id := functionapp.InvocationID(r.Header); id != "" {
		ctx = logctx.With(ctx, "invocationId", id)
	}
	r = r.WithContext(ctx)
	inv, status, err := readInvocation(w, r)
	if err != nil {
		h.reject(w, r, status, err)
		return
	}
	if fn.http != nil {
		h.invokeHTTP(w, r, fn, inv)
		return
	}
	h.invokeQueue(w, r, fn, inv)
}

// invocation is the envelope the host POSTs for every non-forwarded call.
type invocation struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

func readInvocation(w http.ResponseWriter, r *http.Request) (*invocation, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvocationBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("invocation exceeds %d bytes", maxInvocationBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read invocation: %w", err)
	}
	inv, err := parseInvocation(body)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return inv, 0, nil
}

// parseInvocation decodes an invocation envelope.
func parseInvocation(body []byte) (*invocation, error) {
	// encoding/json keeps invalid UTF-8 inside a raw value as it is but
	// replaces it inside a string, so one request body would read two ways
	// depending on how the host chose to encode it.
	if !utf8.Valid(body) {
		return nil, errors.New("invocation is not valid UTF-8")
	}
	var inv invocation
	if err := json.Unmarshal(body, &inv); err != nil {
		return nil, fmt.Errorf("invocation is not a JSON envelope: %w", err)
	}
	if inv.Data == nil {
		return nil, errors.New("invocation has no Data object")
	}
	return &inv, nil
}

// binding returns the Data or Metadata entry of name. The host spells keys
// as function.json does, but it matches binding names without regard to
// case, so a key differing only in case is still ours.
func binding(m map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// reply is the invocation response. Logs is never null and ReturnValue is
// always present because the host reads both keys.
type reply struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

func writeReply(w http.ResponseWriter, rep reply) {
	if rep.Outputs == nil {
		rep.Outputs = map[string]any{}
	}
	if rep.Logs == nil {
		rep.Logs = []string{}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		functionapp.WriteResponse(w, functionapp.Problem(http.StatusInternalServerError, "", "internal error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b) // the host has gone if this fails, and it then retries on its own
}

// expandSettings resolves %Name% in a binding value the way the host does,
// from the app settings it also passes us as environment variables; an
// unknown name stays as written, so a mistake shows in the logs.
func expandSettings(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		name := s[i+1 : i+1+j]
		if v, ok := lookup(name); ok && name != "" {
			b.WriteString(s[:i])
			b.WriteString(v)
			s = s[i+j+2:]
			continue
		}
		b.WriteString(s[:i+1])
		s = s[i+1:]
	}
	b.WriteString(s)
	return b.String()
}
