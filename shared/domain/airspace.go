package domain

import (
	"time"

	"github.com/fabrikam/dronedelivery/shared/geo"
)

// Airspace says where drones may fly at a moment: the service areas that
// bound where pickups and dropoffs may be, and the no-fly zones that legs
// must go around. It is a snapshot; the ports package says how the
// handlers get the current one.
type Airspace interface {
	// Admit returns nil when loc may be a pickup or dropoff at t, and
	// otherwise an EUNPROCESSABLE *Error naming field with the reason
	// (outside every service area, inside a named no-fly zone).
	Admit(field string, loc Location, at time.Time) error
	// Route returns the shortest path a drone may fly from a to b at t,
	// going around the no-fly zones then in force. It returns an
	// EUNPROCESSABLE *Error when no such path exists.
	Route(a, b Location, at time.Time) (Route, error)
}

// TimedAirspace is an airspace whose no-fly zones may be in force for a
// window only (temporary flight restrictions). A leg flown over a span of
// time meets every zone in force at any moment of it, so dispatch routes
// each leg round those (PlanRoute).
type TimedAirspace interface {
	Airspace
	// Timed reports whether any no-fly zone has a window; without one,
	// RouteDuring is Route.
	Timed() bool
	// RouteDuring is Route round every no-fly zone in force at any time
	// in [start, end].
	RouteDuring(a, b Location, start, end time.Time) (Route, error)
}

// AreaLocator is implemented by an airspace with service areas: it names
// the one a location lies in, which analytics count a delivery under.
type AreaLocator interface {
	// AreaOf returns the id of the first service area in force at t that
	// holds loc, or "" when none does.
	AreaOf(loc Location, at time.Time) string
}

// Route is a flyable path: its points from start to end, both included,
// and its length along the great circles between them.
type Route struct {
	Points []Location `json:"points"`
	Km     float64    `json:"km"`
}

// remainingKm is how far a drone at from has still to fly to to along r
// (geo.RemainingKm): the straight line when r has fewer than two points,
// and never less than it.
func (r Route) remainingKm(from, to Location) float64 {
	straight := DistanceKm(from, to)
	if len(r.Points) < 2 {
		return straight
	}
	path := make([]geo.Point, len(r.Points))
	for i, p := range r.Points {
		path[i] = p.Point()
	}
	return max(geo.RemainingKm(path, from.Point()), straight)
}

// StraightRoute is the direct path from a to b.
func StraightRoute(a, b Location) Route {
	return Route{Points: []Location{a, b}, Km: DistanceKm(a, b)}
}

// OpenAirspace has no service areas and no no-fly zones: every point is
// admitted and every route is straight. It is the airspace of a service
// whose operator has defined neither.
type OpenAirspace struct{}

// Admit admits every location.
func (OpenAirspace) Admit(string, Location, time.Time) error { return nil }

// Route returns the straight route.
func (OpenAirspace) Route(a, b Location, _ time.Time) (Route, error) { return StraightRoute(a, b), nil }
