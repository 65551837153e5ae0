package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// lockedBuffer is a log sink the handlers may write from several
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A request whose client hung up before it was served is not logged as an
// error of the service: nothing failed but the client's patience.
func TestARequestItsClientGaveUpIsNoError(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.putDrone(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	body, _ := json.Marshal(map[string]any{"location": at(0, 0), "batteryPercent": 90, "timestamp": f.clock.Now().Format(time.RFC3339Nano)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp := functionapp.Call(ctx, f.reg["PostTelemetry"].HTTP, &functionapp.Request{Method: "POST", Params: map[string]string{"id": "d1"},
		Header: http.Header{"Authorization": {"Bearer " + operatorKey}, "Content-Type": {"application/json"}}, Body: body})
	assert.Equal(t, http.StatusServiceUnavailable, resp.Status, string(resp.Body))
	assert.NotContains(t, logs.String(), `"level":"ERROR"`)
	assert.Contains(t, logs.String(), "client gave up")
}
