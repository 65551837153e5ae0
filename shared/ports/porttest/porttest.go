// Package porttest holds the contract suites that every adapter of a port
// must pass, so the embedded backend and the Azure one cannot drift apart.
//
// The suites see an adapter only through the port interfaces. Every test
// runs in parallel and names its own ids and queues at random, so an
// adapter may hand all of them one shared backend. Waits have generous
// deadlines that only keep a broken adapter from hanging the run; nothing
// asserts how fast an operation is.
package porttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/stretchr/testify/require"
)

// storeSuite is one contract suite of ports.Store.
type storeSuite struct {
	name string
	run  func(t *testing.T, open func(t *testing.T) ports.Store)
	// shared says the suite allows open to hand every test one backend.
	shared bool
}

var storeSuites = []storeSuite{
	{"Collections", Collections, true},
	{"Listing", Listing, true},
	{"Zones", Zones, true},
	{"Waiting", Waiting, false},
	{"Pauses", Pauses, true},
	{"Fleet", Fleet, true},
	{"Analytics", Analytics, false},
}

// Store runs every store suite as a parallel subtest of t named after the
// suite. open must return a store of its own per call.
func Store(t *testing.T, open func(t *testing.T) ports.Store) {
	runStoreSuites(t, open, false)
}

// SharedStore runs, as parallel subtests of t named after them, the store
// suites that allow open to hand every test one shared backend: a run in
// which every test also meets the documents of all the others.
func SharedStore(t *testing.T, open func(t *testing.T) ports.Store) {
	runStoreSuites(t, open, true)
}

func runStoreSuites(t *testing.T, open func(t *testing.T) ports.Store, sharedOnly bool) {
	for _, s := range storeSuites {
		if sharedOnly && !s.shared {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s.run(t, open)
		})
	}
}

// patience bounds every wait for something that should happen promptly;
// waits end as soon as what they wait for happens, so only a hang, never a
// busy machine, reaches it.
const patience = time.Minute

// unique returns a name no other test will use, so tests can share a
// backend.
func unique(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return "porttest-" + prefix + "-" + hex.EncodeToString(b[:])
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}

func mustCode(t *testing.T, err error, code, what string) {
	t.Helper()
	require.Equal(t, code, domain.ErrorCode(err), "%s: the code of error %v", what, err)
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Eventually retries check until it succeeds or a minute runs out; it is
// for the things a port allows to trail a write for a moment, and for what
// an adapter's caches learn only at their next reload.
func Eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, patience, err)
		}
		<-tick.C
	}
}

// errSentinel is an update function's own error, which must come back as is.
var errSentinel = errors.New("porttest: the update function failed")
