// Package servicebusdouble starts the Service Bus stand-in (servicebus.js,
// an AMQP 1.0 server on rhea) and manages its queues and faults. It is a test tool.
package servicebusdouble

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// ServiceBus is a running Service Bus test double (servicebus.js): one
// in-memory namespace reachable with the unmodified azservicebus client.
type ServiceBus struct {
	proc  *testdoubles.Process
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
	p, admin := testdoubles.StartWithAdmin(t, "servicebus.js", "Service Bus")
	return &ServiceBus{proc: p, admin: admin}
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
	testdoubles.AdminCall(t, "Service Bus", method, s.admin+path, in, out)
}

// ServiceBusFault is one window of failure of the double's default
// namespace. Locks held when it opens stay, and expire as usual.
type ServiceBusFault struct {
	// RefuseLinks answers every new link but the $cbs token exchange with
	// a detach (amqp:link:detach-forced) while the window lasts.
	RefuseLinks bool
	// DetachLinks detaches every open link (amqp:link:detach-forced) when
	// the window opens, as Service Bus does during an upgrade.
	DetachLinks bool
	// ServerBusy rejects sends and management requests with
	// com.microsoft:server-busy and delivers no message.
	ServerBusy bool
	// IgnoreSettlements leaves every settlement sent on a receiving link
	// unanswered, as a link that went silent would; the $management link
	// still settles by lock token.
	IgnoreSettlements bool
	// For is the window's length; zero lasts until Heal.
	For time.Duration
}

// ServiceBusFaultState is what the double reports about its fault switch.
type ServiceBusFaultState struct {
	Active   bool `json:"active"`
	Refused  int  `json:"refused"`  // links refused in the window
	Detached int  `json:"detached"` // links detached when it opened
	Busy     int  `json:"busy"`     // requests answered server-busy
	Ignored  int  `json:"ignored"`  // settlements left unanswered
}

// Fault opens a window of failure, replacing any window still open; the
// double ends it by itself after f.For.
func (s *ServiceBus) Fault(t testing.TB, f ServiceBusFault) {
	t.Helper()
	s.call(t, http.MethodPut, "/faults", map[string]any{
		"refuseLinks": f.RefuseLinks, "detachLinks": f.DetachLinks, "serverBusy": f.ServerBusy,
		"ignoreSettlements": f.IgnoreSettlements, "durationMs": f.For.Milliseconds(),
	}, nil)
}

// Heal ends the current fault at once.
func (s *ServiceBus) Heal(t testing.TB) {
	t.Helper()
	s.call(t, http.MethodDelete, "/faults", nil, nil)
}

// FaultState reports whether a fault is active and what it refused.
func (s *ServiceBus) FaultState(t testing.TB) ServiceBusFaultState {
	t.Helper()
	var out ServiceBusFaultState
	s.call(t, http.MethodGet, "/faults", nil, &out)
	return out
}
