package wire

import (
	"github.com/fabrikam/dronedelivery/shared/domain"

	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// MaxReportsPerPost bounds one telemetry POST.
const MaxReportsPerPost = 100

type telemetryWire struct {
	Location       json.RawMessage `json:"location"`
	BatteryPercent *float64        `json:"batteryPercent"`
	Timestamp      *string         `json:"timestamp"`
}

// ParseTelemetry decodes and validates POST /api/drones/{id}/telemetry: one
// report or an array of them. checkTime, when not nil, is given each
// report's timestamp and the field to name should it refuse it (see
// domain.TrackingConfig.CheckReportTime).
func ParseTelemetry(droneID string, body []byte, checkTime func(field string, at time.Time) error) ([]domain.Telemetry, error) {
	if err := domain.ValidID("id", droneID); err != nil {
		return nil, err
	}
	var wires []telemetryWire
	prefix := ""
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := DecodeStrictLarge(body, &wires); err != nil {
			return nil, err
		}
		if len(wires) == 0 || len(wires) > MaxReportsPerPost {
			return nil, domain.Invalid("body", "must hold 1 to %d reports", MaxReportsPerPost)
		}
		prefix = "["
	} else {
		var w telemetryWire
		if err := DecodeStrictLarge(body, &w); err != nil {
			return nil, err
		}
		wires = []telemetryWire{w}
	}
	out := make([]domain.Telemetry, len(wires))
	for i, w := range wires {
		field := ""
		if prefix != "" {
			field = fmt.Sprintf("[%d].", i)
		}
		r, err := telemetryReport(droneID, field, w.Location, w.BatteryPercent, w.Timestamp)
		if err != nil {
			return nil, err
		}
		if checkTime != nil {
			if err := checkTime(field+"timestamp", r.Timestamp); err != nil {
				return nil, err
			}
		}
		out[i] = *r
	}
	return out, nil
}

func telemetryReport(droneID, field string, loc json.RawMessage, battery *float64, ts *string) (*domain.Telemetry, error) {
	if err := domain.ValidID(field+"droneId", droneID); err != nil {
		return nil, err
	}
	l, err := ParseLocation(field+"location", loc)
	if err != nil {
		return nil, err
	}
	if battery == nil || math.IsNaN(*battery) || *battery < 0 || *battery > 100 {
		return nil, domain.Invalid(field+"batteryPercent", "is required, between 0 and 100")
	}
	if ts == nil {
		return nil, domain.Invalid(field+"timestamp", "is required")
	}
	t, err := parseRFC3339(*ts)
	if err != nil {
		return nil, domain.Invalid(field+"timestamp", "must be an RFC 3339 date-time")
	}
	if t, err = inRange(field+"timestamp", t); err != nil {
		return nil, err
	}
	return &domain.Telemetry{DroneID: droneID, Location: l, BatteryPercent: *battery, Timestamp: t}, nil
}
