package handlers_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// crashingFleet fails the next write of one drone when armed, as a process
// that stopped between a drone action's two writes would leave it.
type crashingFleet struct {
	ports.Fleet
	droneID string
	armed   *atomic.Bool
}

func (c crashingFleet) Update(ctx context.Context, id string, fn func(*domain.Drone) error) (*domain.Drone, error) {
	if id == c.droneID && c.armed.CompareAndSwap(true, false) {
		return nil, errors.New("the process stopped here")
	}
	return c.Fleet.Update(ctx, id, fn)
}

// A ground that stops after the delivery was handed on and before the
// drone was written is finished by the message it queued first: the drone
// ends grounded, not back in service, even though the delivery's new
// dispatch released it in between; the delivery goes to the other drone,
// audited once; the message delivered again changes nothing.
func TestGroundStoppedHalfwayIsFinished(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Store.Fleet = crashingFleet{Fleet: d.Store.Fleet, droneID: "near", armed: armed}
	})
	f.putDrone(t, domain.Drone{ID: "near", Location: at(0.011, 0)})
	f.putDrone(t, domain.Drone{ID: "far", Location: at(0.03, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("d", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	f.drain(t)
	require.Equal(t, "near", f.delivery(t, "d").DroneID)

	armed.Store(true)
	resp := f.action(t, "DroneAction", "near", map[string]any{"action": "ground", "reason": "bird strike"})
	require.NotEqual(t, http.StatusAccepted, resp.Status, "the call stopped halfway")
	require.Equal(t, domain.StageRescheduled, f.delivery(t, "d").Stage, "the delivery was handed on")
	require.Equal(t, "d", f.drone(t, "near").CurrentDeliveryID, "the drone was not written")

	finish := f.receive(t, topology.QueueDroneTelemetry)
	require.Len(t, finish, 1, "the action's own message is queued")
	body := finish[0].Body
	require.NoError(t, f.bus.Abandon(context.Background(), finish[0]))
	f.drain(t)
	check := func(when string) {
		d := f.delivery(t, "d")
		assert.Equal(t, domain.StageScheduled, d.Stage, when)
		assert.Equal(t, "far", d.DroneID, when)
		near := f.drone(t, "near")
		assert.Equal(t, domain.DroneMaintenance, near.Status, when)
		assert.Equal(t, "bird strike", near.StatusReason, when)
		assert.Empty(t, near.CurrentDeliveryID, when)
		n := 0
		for _, e := range d.History {
			if e.Kind == domain.EventOperator {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s: audited once", when)
	}
	check("after the queued message")

	require.NoError(t, f.bus.Publish(context.Background(), ports.Message{ID: "again", Queue: topology.QueueDroneTelemetry,
		Body: body, Operation: finish[0].Operation}))
	f.drain(t)
	check("after the message again")
}
