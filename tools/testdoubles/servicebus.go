package testdoubles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ServiceBus is a running Service Bus test double (servicebus.js): one
// in-memory namespace reachable with the unmodified azservicebus client.
type ServiceBus struct {
	proc  *Process
	admin string // base URL of the HTTP admin endpoint
}

// QueueProperties are the queue settings that Azure takes from
// infrastructure rather than from the client; zero fields keep the double's
// defaults (lock 1 minute, 10 deliveries, duplicate window 10 minutes).
type QueueProperties struct {
	LockDuration             time.Duration
	MaxDeliveryCount         int
	DuplicateDetectionWindow time.Duration
}

// QueueStats counts a queue's messages as the double sees them.
type QueueStats struct {
	Active       int `json:"active"`       // available or locked, not scheduled
	Scheduled    int `json:"scheduled"`    // waiting for their enqueue time
	Locked       int `json:"locked"`       // delivered and not yet settled
	DeadLettered int `json:"deadLettered"` // in the dead-letter sub-queue
	Transfers    int `json:"transfers"`    // sends received: a batch counts once
}

// StartServiceBus starts the double for the duration of the test.
func StartServiceBus(t testing.TB) *ServiceBus {
	t.Helper()
	// The harness reads only the READY line, so the double also writes its
	// admin port to a file, before it prints READY.
	portFile := filepath.Join(t.TempDir(), "servicebus-admin-port")
	p := Start(t, "servicebus.js", "--admin-port-file", portFile)
	raw, err := os.ReadFile(portFile)
	if err != nil {
		t.Fatalf("read the Service Bus double's admin port: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("the Service Bus double's admin port %q: %v", raw, err)
	}
	return &ServiceBus{proc: p, admin: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// ConnectionString reaches the double's default namespace.
func (s *ServiceBus) ConnectionString() string {
	return serviceBusConnectionString(s.proc.Port)
}

func serviceBusConnectionString(port int) string {
	return fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;", port)
}

// CreateQueue creates (or reconfigures) a queue in the default namespace
// with a lock duration and a max delivery count; zero keeps the default.
func (s *ServiceBus) CreateQueue(t testing.TB, name string, lock time.Duration, maxDelivery int) {
	t.Helper()
	s.CreateQueueWith(t, name, QueueProperties{LockDuration: lock, MaxDeliveryCount: maxDelivery})
}

// CreateQueueWith creates (or reconfigures) a queue in the default namespace.
func (s *ServiceBus) CreateQueueWith(t testing.TB, name string, p QueueProperties) {
	t.Helper()
	s.call(t, http.MethodPut, "/queues/"+url.PathEscape(name), p.body(), nil)
}

// Namespace starts another namespace whose queues, created on first use,
// get the given properties, and returns its connection string. It suits
// tests that create queue names they cannot announce in advance.
func (s *ServiceBus) Namespace(t testing.TB, defaults QueueProperties) string {
	t.Helper()
	var out struct{ Port int }
	s.call(t, http.MethodPost, "/namespaces", defaults.body(), &out)
	return serviceBusConnectionString(out.Port)
}

// Stats reports the counts of a queue in the default namespace.
func (s *ServiceBus) Stats(t testing.TB, queue string) QueueStats {
	t.Helper()
	var out QueueStats
	s.call(t, http.MethodGet, "/queues/"+url.PathEscape(queue), nil, &out)
	return out
}

func (p QueueProperties) body() map[string]any {
	return map[string]any{
		"lockDurationMs":             p.LockDuration.Milliseconds(),
		"maxDeliveryCount":           p.MaxDeliveryCount,
		"duplicateDetectionWindowMs": p.DuplicateDetectionWindow.Milliseconds(),
	}
}

func (s *ServiceBus) call(t testing.TB, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.admin+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("Service Bus double admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("Service Bus double admin %s %s: %s: %s", method, path, resp.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("Service Bus double admin %s %s: %v: %s", method, path, err, raw)
		}
	}
}
