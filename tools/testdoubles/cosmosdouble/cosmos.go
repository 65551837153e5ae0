// Package cosmosdouble starts the Cosmos DB stand-in (cosmos.js on
// @vercel/cosmosdb-server) and switches its faults. It is a test tool.
package cosmosdouble

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// CosmosKey is the account key the Cosmos DB double is reached with; the
// double checks no keys, but the SDK insists on decoding one as base64.
var CosmosKey = base64.StdEncoding.EncodeToString([]byte("dronedelivery cosmos test double, no secret"))

// Cosmos is a running Cosmos DB double (cosmos.js) with its fault switch.
type Cosmos struct {
	proc  *testdoubles.Process
	admin string // base URL of the HTTP admin endpoint
}

// CosmosFaultKind is how the double fails the requests a fault applies to.
type CosmosFaultKind string

// The kinds of Cosmos DB fault.
const (
	// CosmosThrottle answers 429 with x-ms-retry-after-ms and sub-status
	// 3200, as Cosmos DB does when a partition's request units are spent.
	CosmosThrottle CosmosFaultKind = "throttle"
	// CosmosUnavailable answers 503, as during a failover.
	CosmosUnavailable CosmosFaultKind = "unavailable"
	// CosmosDrop closes the connection without an answer.
	CosmosDrop CosmosFaultKind = "drop"
	// CosmosRefuse stops listening and closes every open connection, so
	// new connections are refused, until the window ends.
	CosmosRefuse CosmosFaultKind = "refuse"
	// CosmosHang holds requests unanswered until the window ends, then
	// serves them, as a server that stopped responding.
	CosmosHang CosmosFaultKind = "hang"
)

// CosmosFault is one window of failure.
type CosmosFault struct {
	Kind CosmosFaultKind
	// Container limits the fault to one container's requests; empty means
	// every request. CosmosRefuse ignores it: a port refuses everyone.
	Container string
	// For is the window's length; zero lasts until Heal.
	For time.Duration
	// RetryAfter is the x-ms-retry-after-ms of a throttle (100 ms when zero).
	RetryAfter time.Duration
}

// CosmosFaultState is what the double reports about its fault switch.
type CosmosFaultState struct {
	Active    bool            `json:"active"`
	Kind      CosmosFaultKind `json:"kind"`
	Container string          `json:"container"`
	Injected  int             `json:"injected"` // requests failed by the current fault
}

// StartCosmos starts the Cosmos DB double (cosmos.js) for the test's lifetime
// and returns a connection string for azcosmos.NewClientFromConnectionString.
func StartCosmos(t testing.TB) (connectionString string) {
	t.Helper()
	return StartCosmosDouble(t).ConnectionString()
}

// StartCosmosDouble starts the Cosmos DB double for the test's lifetime and
// returns it, so that the test can also switch faults on.
func StartCosmosDouble(t testing.TB) *Cosmos {
	t.Helper()
	p, admin := testdoubles.StartWithAdmin(t, "cosmos.js", "Cosmos DB")
	return &Cosmos{proc: p, admin: admin}
}

// ConnectionString reaches the double, ending at the key because the SDK's
// parser folds any later pair into it.
func (c *Cosmos) ConnectionString() string {
	return fmt.Sprintf("AccountEndpoint=http://%s/;AccountKey=%s;", c.proc.Addr(), CosmosKey)
}

// Fault starts a window of failure, replacing any window still open; the
// double ends it by itself after f.For.
func (c *Cosmos) Fault(t testing.TB, f CosmosFault) {
	t.Helper()
	testdoubles.AdminCall(t, "Cosmos DB", http.MethodPut, c.admin+"/faults", map[string]any{
		"kind": f.Kind, "container": f.Container, "durationMs": f.For.Milliseconds(), "retryAfterMs": f.RetryAfter.Milliseconds(),
	}, nil)
}

// Heal ends the current fault at once.
func (c *Cosmos) Heal(t testing.TB) {
	t.Helper()
	testdoubles.AdminCall(t, "Cosmos DB", http.MethodDelete, c.admin+"/faults", nil, nil)
}

// FaultState reports whether a fault is active and how many requests it failed.
func (c *Cosmos) FaultState(t testing.TB) CosmosFaultState {
	t.Helper()
	var out CosmosFaultState
	testdoubles.AdminCall(t, "Cosmos DB", http.MethodGet, c.admin+"/faults", nil, &out)
	return out
}
