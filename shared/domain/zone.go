package domain

import "time"

// ZoneKind tells a service area from a no-fly zone.
type ZoneKind string

// The kinds of zone an operator defines.
const (
	// ServiceArea bounds where pickups and dropoffs may be: when at least
	// one is in force, a point outside every one is refused.
	ServiceArea ZoneKind = "serviceArea"
	// NoFlyZone is airspace drones must not enter: legs go around it and a
	// point inside it is refused.
	NoFlyZone ZoneKind = "noFlyZone"
)

// Limits of one zone, so that no document grows past what a point read
// and a route search handle quickly.
const (
	// MaxZoneVertices bounds the positions of a zone's geometry, every
	// ring of every polygon counted.
	MaxZoneVertices = 2000
	// MaxZonePolygons bounds the polygons of a MultiPolygon.
	MaxZonePolygons = 50
	// MaxZoneNameLength bounds a zone's name, in characters.
	MaxZoneNameLength = 200
	// MaxZonesPerKind bounds the service areas, and the no-fly zones, an
	// operator keeps: every dispatch works with all of them.
	MaxZonesPerKind = 1000
)

// Position is a GeoJSON position: longitude, then latitude, in degrees.
type Position [2]float64

// Polygon is one polygon's rings: its boundary first, then any holes. Each
// ring is closed (its last position repeats its first).
type Polygon [][]Position

// Zone is a service area or a no-fly zone as the operator defined it. With
// ValidFrom or ValidTo set it is a temporary flight restriction, in force
// only in [ValidFrom, ValidTo).
type Zone struct {
	ID   string   `json:"zoneId"`
	Kind ZoneKind `json:"kind"`
	Name string   `json:"name,omitempty"`
	// GeometryType is Polygon or MultiPolygon, as the operator gave it;
	// Polygons holds one polygon for a Polygon.
	GeometryType string    `json:"geometryType"`
	Polygons     []Polygon `json:"polygons"`
	ValidFrom    time.Time `json:"validFrom,omitzero"`
	ValidTo      time.Time `json:"validTo,omitzero"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// ZoneKey is the key a zone is stored under: service areas and no-fly zones
// have ids of their own, so the kind is part of the key.
func ZoneKey(kind ZoneKind, id string) string { return string(kind) + ":" + id }

// Key is the key z is stored under.
func (z *Zone) Key() string { return ZoneKey(z.Kind, z.ID) }

// ActiveAt reports whether z is in force at t.
func (z *Zone) ActiveAt(t time.Time) bool { return z.ActiveDuring(t, t) }

// ActiveDuring reports whether z is in force at any time in [from, to].
func (z *Zone) ActiveDuring(from, to time.Time) bool {
	return (z.ValidFrom.IsZero() || !to.Before(z.ValidFrom)) && (z.ValidTo.IsZero() || from.Before(z.ValidTo))
}

// Ended reports whether z's window has closed by t: a zone with a validTo
// at or before t is in force no more and never will be again.
func (z *Zone) Ended(t time.Time) bool { return !z.ValidTo.IsZero() && !z.ValidTo.After(t) }

// The states of a zone, as the API shows them.
const (
	ZoneUpcoming = "upcoming" // its validFrom is still ahead
	ZoneInForce  = "inForce"
	ZoneEnded    = "ended" // its validTo has passed
)

// State says where t lies in z's window: ZoneUpcoming, ZoneInForce or
// ZoneEnded.
func (z *Zone) State(t time.Time) string {
	switch {
	case z.Ended(t):
		return ZoneEnded
	case !z.ValidFrom.IsZero() && t.Before(z.ValidFrom):
		return ZoneUpcoming
	}
	return ZoneInForce
}

// Label names z in messages: its name when it has one, else its id.
func (z *Zone) Label() string {
	if z.Name != "" {
		return z.Name + " (" + z.ID + ")"
	}
	return z.ID
}
