package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// TestCrashLosesNothingAccepted kills the process with SIGKILL right after a
// batch of 202s, mid-chain, restarts it on the same data folder and checks
// that every accepted delivery is still there and finishes its chain, with
// no drone on two deliveries.
func TestCrashLosesNothingAccepted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"-seed", "300", "-lock-duration", "2s"}
	var accepted []string
	var mu sync.Mutex
	var a api // signed up once: the key lives in the data folder across restarts
	for round := range 3 {
		p := startServe(t, dir, args...)
		if round == 0 {
			a = signUp(t, p.base)
		}
		a.base = p.base
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 15 {
					id := fmt.Sprintf("crash-%d-%d-%d", round, w, i)
					body := deliveryRequest(id, domain.Location{Latitude: 47.6062 + float64(i)*0.001, Longitude: -122.3321},
						domain.Location{Latitude: 47.6162, Longitude: -122.3221 - float64(w)*0.001}, "Small", 1)
					resp := a.call(t, "POST", "/api/deliveryrequests", body)
					if resp.Status == http.StatusAccepted {
						mu.Lock()
						accepted = append(accepted, id)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		p.kill()
	}
	require.Len(t, accepted, 180)

	p := startServe(t, dir, args...)
	a.base = p.base
	drones := map[string]string{}
	for _, id := range accepted {
		d := waitStage(t, a, id, domain.StageScheduled, domain.StageFailed)
		if d.Stage == domain.StageFailed {
			assert.NotEmpty(t, d.FailureReason, id)
			continue
		}
		checkSchedule(t, a, d)
		prev, dup := drones[d.DroneID]
		assert.False(t, dup, "drone %s on %s and %s", d.DroneID, prev, id)
		drones[d.DroneID] = id
	}
	assert.Len(t, dronesIn(t, a, domain.DroneAssigned), len(drones), "no drone is held by a delivery that does not know it")
}
