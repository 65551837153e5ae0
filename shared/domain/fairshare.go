package domain

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The fair-share rule. When drones are scarce, deliveries wait for one in
// a queue per area (the cell of a coarse grid their pickup lies in), and a
// drone that comes free goes to the waiting delivery that ranks first:
// expedited before not; then the one whose account holds the fewest drones
// in the area; then the oldest. Nobody waits while a drone is idle that no
// higher-ranked delivery can use (the rule is work-conserving): an account
// alone may use every drone.

// AreaOf names the area of a location: the cell of the grid a
// FleetSummary groups home bases by (a quarter degree, about 28 km north–
// south), so that the summary counts an area's drones.
func AreaOf(loc Location) string {
	k := cellOf(loc)
	return fmt.Sprintf("%d:%d", k[0], k[1])
}

// AreasAround names loc's area, then the eight areas around it: those
// whose waiting deliveries a drone freed at loc is nearest to, within the
// dispatch radius of any but a very short-range fleet.
func AreasAround(loc Location) []string {
	k := cellOf(loc)
	out := []string{AreaOf(loc)}
	for _, d := range [8][2]int32{{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 1}, {1, -1}, {1, 0}, {1, 1}} {
		out = append(out, fmt.Sprintf("%d:%d", k[0]+d[0], k[1]+d[1]))
	}
	return out
}

func cellOf(loc Location) [2]int32 {
	return [2]int32{int32(math.Floor(loc.Latitude / summaryCellDeg)), int32(math.Floor(loc.Longitude / summaryCellDeg))}
}

// DronesIn is how many drones of the summary are based in area (AreaOf).
func (s *FleetSummary) DronesIn(area string) int {
	lat, lon, ok := strings.Cut(area, ":")
	i, err1 := strconv.ParseInt(lat, 10, 32)
	j, err2 := strconv.ParseInt(lon, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0
	}
	if c := s.cells[[2]int32{int32(i), int32(j)}]; c != nil {
		return c.drones
	}
	return 0
}

// Waiter is a delivery waiting for a drone, as the fair-share rule ranks it.
type Waiter struct {
	DeliveryID string
	OwnerID    string
	Expedited  bool
	CreatedAt  time.Time
	// Held is how many drones the owner's deliveries in the area hold.
	Held int
}

// Outranks reports whether w gets a free drone before o.
func (w Waiter) Outranks(o Waiter) bool {
	if w.Expedited != o.Expedited {
		return w.Expedited
	}
	if w.Held != o.Held {
		return w.Held < o.Held
	}
	if !w.CreatedAt.Equal(o.CreatedAt) {
		return w.CreatedAt.Before(o.CreatedAt)
	}
	return w.DeliveryID < o.DeliveryID
}

// HoldsDrone reports whether the delivery holds a drone now: one is
// claimed for it and it has not ended.
func (d *Delivery) HoldsDrone() bool { return d.DroneAssignedAt != nil && !d.Stage.Terminal() }

// HoldingArea is the area whose drones the delivery's drone counts among:
// that of the drone's home base, as the operator's cap on an account's
// share counts it, so that pickups placed in an area with no drones of its
// own do not put an account's drones from the next area out of the count.
// A delivery stored before the area was noted counts in its pickup's.
func (d *Delivery) HoldingArea() string {
	if d.DroneArea != "" {
		return d.DroneArea
	}
	return AreaOf(d.Request.PickupLocation)
}
