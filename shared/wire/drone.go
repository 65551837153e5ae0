package wire

import (
	"github.com/fabrikam/dronedelivery/shared/domain"

	"encoding/json"
	"math"
)

type droneWire struct {
	Location       json.RawMessage `json:"location"`
	HomeBase       json.RawMessage `json:"homeBase"`
	MaxPayloadKg   *float64        `json:"maxPayloadKg"`
	MaxPackageSize *string         `json:"maxPackageSize"`
	RangeKm        *float64        `json:"rangeKm"`
	CruiseSpeedMps *float64        `json:"cruiseSpeedMps"`
	BatteryPercent *float64        `json:"batteryPercent"`
	Status         *string         `json:"status"`
}

// ParseDrone decodes and validates a PUT /api/drones/{id} body. The home
// base defaults to the location and the status to Available; an operator may
// set only the statuses a drone can hold without a delivery.
func ParseDrone(id string, body []byte) (*domain.Drone, error) {
	if err := domain.ValidID("id", id); err != nil {
		return nil, err
	}
	var w droneWire
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	d := &domain.Drone{ID: id, Status: domain.DroneAvailable, BatteryPercent: 100}
	var err error
	if d.Location, err = ParseLocation("location", w.Location); err != nil {
		return nil, err
	}
	d.HomeBase = d.Location
	if len(w.HomeBase) > 0 && string(w.HomeBase) != "null" {
		if d.HomeBase, err = ParseLocation("homeBase", w.HomeBase); err != nil {
			return nil, err
		}
	}
	if d.MaxPayloadKg, err = positive("maxPayloadKg", w.MaxPayloadKg, domain.MaxWeightKg); err != nil {
		return nil, err
	}
	if w.MaxPackageSize == nil {
		return nil, domain.Invalid("maxPackageSize", "is required")
	}
	if d.MaxPackageSize = domain.PackageSize(*w.MaxPackageSize); d.MaxPackageSize.Rank() == 0 {
		return nil, domain.Invalid("maxPackageSize", "must be one of Small, Medium, Large")
	}
	if d.RangeKm, err = positive("rangeKm", w.RangeKm, domain.MaxRangeKm); err != nil {
		return nil, err
	}
	// The speed divides every leg of an ETA: a tiny one would overflow it.
	if v := w.CruiseSpeedMps; v == nil || math.IsNaN(*v) || *v < domain.MinCruiseSpeedMps || *v > domain.MaxCruiseSpeedMps {
		return nil, domain.Invalid("cruiseSpeedMps", "is required, from %d to %d m/s", domain.MinCruiseSpeedMps, domain.MaxCruiseSpeedMps)
	}
	d.CruiseSpeedMps = *w.CruiseSpeedMps
	if w.BatteryPercent != nil {
		if b := *w.BatteryPercent; math.IsNaN(b) || b < 0 || b > 100 {
			return nil, domain.Invalid("batteryPercent", "must be between 0 and 100")
		}
		d.BatteryPercent = *w.BatteryPercent
	}
	if w.Status != nil {
		switch s := domain.DroneStatus(*w.Status); s {
		case domain.DroneAvailable, domain.DroneCharging, domain.DroneMaintenance, domain.DroneRetired:
			d.Status = s
		default:
			return nil, domain.Invalid("status", "must be one of Available, Charging, Maintenance, Retired")
		}
	}
	return d, nil
}

func positive(field string, v *float64, max float64) (float64, error) {
	if v == nil {
		return 0, domain.Invalid(field, "is required")
	}
	if math.IsNaN(*v) || *v <= 0 || *v > max {
		return 0, domain.Invalid(field, "must be greater than 0 and at most %g", max)
	}
	return *v, nil
}
