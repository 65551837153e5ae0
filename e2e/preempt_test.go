package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// TestExpeditedTakesADroneNotYetFlying runs the preemption scenario
// through the binary on the embedded backend.
func TestExpeditedTakesADroneNotYetFlying(t *testing.T) { onEmbedded(t, preemptScenario) }

// TestExpeditedTakesADroneNotYetFlyingOnAzureAdapters is the same on
// Cosmos DB and Service Bus, through the local doubles.
func TestExpeditedTakesADroneNotYetFlyingOnAzureAdapters(t *testing.T) { onAzure(t, preemptScenario) }

// preemptScenario: the only drone is booked for one account's plain
// delivery and has not taken off; another account's expedited delivery,
// which no free drone can serve, takes it. The plain delivery is
// Rescheduled, told why, waits, and gets the drone once the expedited one
// is delivered: nothing is lost and the drone is never booked twice.
func preemptScenario(t *testing.T, p *proc) {
	plain, urgent := signUp(t, p.base), signUp(t, p.base)
	pickup := domain.Location{Latitude: 47.6062, Longitude: -122.3321}
	drop := domain.Location{Latitude: 47.6162, Longitude: -122.3321}
	registerFleet(t, plain, map[string]droneSpec{
		"only": {Location: domain.Location{Latitude: 47.6052, Longitude: -122.3321}, MaxPayloadKg: 5, MaxPackageSize: "Large",
			RangeKm: 30, CruiseSpeedMps: 15, BatteryPercent: 100},
	})

	resp := plain.call(t, "POST", "/api/deliveryrequests", deliveryRequest("plain-1", pickup, drop, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	require.Equal(t, "only", waitStage(t, plain, "plain-1", domain.StageScheduled).DroneID)

	body := deliveryRequest("urgent-1", pickup, drop, "Small", 1)
	body["expedited"] = true
	body["deadline"] = time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	resp = urgent.call(t, "POST", "/api/deliveryrequests", body)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	got := waitStage(t, urgent, "urgent-1", domain.StageScheduled, domain.StageFailed)
	require.Equal(t, domain.StageScheduled, got.Stage, got.FailureReason)
	assert.Equal(t, "only", got.DroneID, "the expedited delivery took the drone")

	var history struct {
		Events []struct {
			Stage domain.Stage `json:"stage"`
			Kind  string       `json:"kind"`
			Note  string       `json:"note"`
		} `json:"events"`
	}
	urgent.call(t, "GET", "/api/deliveries/urgent-1/history", nil).decode(t, &history)
	kinds := []string{}
	for _, e := range history.Events {
		kinds = append(kinds, e.Kind)
	}
	assert.Contains(t, kinds, domain.EventPreempted)

	// The plain delivery went back to dispatch and waits for a drone.
	eventually(t, "plain-1 to wait without a drone", func() bool {
		d := getDelivery(t, plain, "plain-1")
		return d.Stage == domain.StageRescheduled && d.DroneID == ""
	})
	history.Events = nil
	plain.call(t, "GET", "/api/deliveries/plain-1/history", nil).decode(t, &history)
	last := history.Events[len(history.Events)-1]
	assert.Equal(t, domain.StageRescheduled, last.Stage)
	assert.Contains(t, last.Note, "given to an expedited delivery")
	assert.False(t, strings.Contains(last.Note, "urgent-1"), "another account's delivery is not named")
	var notes struct {
		Notifications []struct{ Kind, Message string } `json:"notifications"`
	}
	eventually(t, "plain-1's customer to be told why", func() bool {
		plain.call(t, "GET", "/api/deliveries/plain-1/notifications", nil).decode(t, &notes)
		for _, n := range notes.Notifications {
			if n.Kind == domain.NotifyPreempted {
				return true
			}
		}
		return false
	})
	var only domain.Drone
	plain.fleet(t, "GET", "/api/drones/only", nil).decode(t, &only)
	assert.Equal(t, "urgent-1", only.CurrentDeliveryID, "booked once, for the expedited delivery")

	// The expedited delivery is flown; the freed drone goes to plain-1.
	reportAt(t, urgent, "only", pickup, time.Now())
	waitStage(t, urgent, "urgent-1", domain.StageHeadedToDropoff)
	reportAt(t, urgent, "only", drop, time.Now().Add(time.Second))
	waitStage(t, urgent, "urgent-1", domain.StageCompleted)
	d := waitStage(t, plain, "plain-1", domain.StageScheduled, domain.StageFailed)
	require.Equal(t, domain.StageScheduled, d.Stage, d.FailureReason)
	assert.Equal(t, "only", d.DroneID, "nothing lost: dispatched again under the same rules")
}
