// Package standalonetest serves the function app on a loopback port for
// the tests of the packages that run it whole.
package standalonetest

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Serve runs srv on a loopback port of its own and returns its base URL
// ("http://127.0.0.1:port") and a stop that ends the run and returns what
// Run returned. The end of the test stops it too, if stop was not called.
func Serve(t testing.TB, srv *standalone.Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	var once sync.Once
	var ran error
	stop = func() error {
		once.Do(func() {
			cancel()
			ran = <-done
		})
		return ran
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

// ServeApp serves the handlers made of deps, with bus as the bus they
// publish to and the server consumes, and the bindings of the functions
// folder under root; it returns the app's base URL and stops when the test
// ends.
func ServeApp(t testing.TB, root string, bus ports.Bus, deps handlers.Deps, opts standalone.Options) string {
	t.Helper()
	deps.Bus = bus
	fns, err := functionapp.LoadFunctions(os.DirFS(root), "functions")
	require.NoError(t, err)
	srv, err := standalone.New(handlers.New(deps).Registry(), fns, bus, deps.Log, opts)
	require.NoError(t, err)
	base, _ := Serve(t, srv)
	return base
}
