package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/apiclient"
)

// flight is one drone's job: from its home to the pickup, then to the
// dropoff.
type flight struct {
	home, pickup, drop domain.Location
}

var (
	// pageFlight is the flight the tracking-page tests watch: about 1.4 km
	// from the drone's home by the pickup to the dropoff.
	pageFlight = flight{
		home:   domain.Location{Latitude: 47.6050, Longitude: -122.3350},
		pickup: domain.Location{Latitude: 47.6080, Longitude: -122.3350},
		drop:   domain.Location{Latitude: 47.6140, Longitude: -122.3300},
	}
	// northFlight goes about 3 km north from the drone's home by the
	// pickup to the dropoff.
	northFlight = flight{
		home:   domain.Location{Latitude: 47.600, Longitude: -122.330},
		pickup: domain.Location{Latitude: 47.610, Longitude: -122.330},
		drop:   domain.Location{Latitude: 47.625, Longitude: -122.320},
	}
	// shortFlight starts 550 m south of the pickup and ends 1.2 km
	// north-east of it.
	shortFlight = flight{
		home:   domain.Location{Latitude: 47.605, Longitude: -122.330},
		pickup: domain.Location{Latitude: 47.610, Longitude: -122.330},
		drop:   domain.Location{Latitude: 47.620, Longitude: -122.325},
	}
)

// book registers droneID, a Medium drone, at f.home and requests delivery
// id (Small, 1 kg) from f.pickup to f.drop; it returns the delivery's
// tracking id.
func (f flight) book(t *testing.T, a api, droneID, id string) string {
	t.Helper()
	putDrone(t, a, droneID, f.home, "Medium")
	resp := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest(id, f.pickup, f.drop, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var acc apiclient.Accepted
	resp.decode(t, &acc)
	return acc.TrackingID
}

// schedule books the flight and waits until the delivery is Scheduled.
func (f flight) schedule(t *testing.T, a api, droneID, id string) string {
	t.Helper()
	trackingID := f.book(t, a, droneID, id)
	waitStage(t, a, id, domain.StageScheduled)
	return trackingID
}

// route is the flight's path as telemetry reports it: toPickup points from
// home to the pickup and toDrop from the pickup to the dropoff, the pickup
// counted once.
func (f flight) route(toPickup, toDrop int) []domain.Location {
	return append(flightPath(f.home, f.pickup, toPickup), flightPath(f.pickup, f.drop, toDrop)[1:]...)
}

// putDrone registers drone id at loc with a full battery, 30 km of range,
// 12 m/s and room for 5 kg in packages up to size.
func putDrone(t *testing.T, a api, id string, loc domain.Location, size string) {
	t.Helper()
	resp := a.fleet(t, "PUT", "/api/drones/"+id, droneSpec{
		Location: loc, MaxPayloadKg: 5, MaxPackageSize: size, RangeKm: 30, CruiseSpeedMps: 12, BatteryPercent: 100})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
}

// historyOf reads delivery id's history as its owner and holds it to the
// legal order of stages.
func historyOf(t *testing.T, a api, id string) []domain.Event {
	t.Helper()
	var hist struct {
		Events []domain.Event `json:"events"`
	}
	a.call(t, "GET", "/api/deliveries/"+id+"/history", nil).decode(t, &hist)
	require.NoError(t, domain.LegalHistory(hist.Events))
	return hist.Events
}

// postReport posts one telemetry report of drone id with the operator key.
func postReport(t *testing.T, a api, id string, loc domain.Location, battery float64, at time.Time) {
	t.Helper()
	r := a.fleet(t, "POST", "/api/drones/"+id+"/telemetry", map[string]any{
		"location": loc, "batteryPercent": battery, "timestamp": at.Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
}
