package handlers_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// A request whose client hung up before it was served is not logged as an
// error of the service: nothing failed but the client's patience.
func TestARequestItsClientGaveUpIsNoError(t *testing.T) {
	t.Parallel()
	var logs testdoubles.LockedBuffer
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
