package domain

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Capability is what one kind of drone can do on a full charge.
type Capability struct {
	PayloadKg   float64
	Size        PackageSize
	SpeedMps    float64
	FullRangeKm float64
}

// covers reports whether c is at least as able as o in every respect.
func (c Capability) covers(o Capability) bool {
	return c.PayloadKg >= o.PayloadKg && c.Size.Rank() >= o.Size.Rank() && c.SpeedMps >= o.SpeedMps && c.FullRangeKm >= o.FullRangeKm
}

// carries reports whether a drone of capability c can lift the package.
func (c Capability) carries(p *PackageInfo) bool {
	return p.Weight <= c.PayloadKg && p.Size.Rank() <= c.Size.Rank()
}

// FullRangeKm is how far the drone may fly on a full charge, keeping the
// reserve: its range now, which keeps the reserve already, and what the
// charge it lacks adds (Drone.FullRangeKm × (100 − battery) / 100), so no
// reserve setting is needed to work it out. (A battery under the reserve
// has a range of 0, and the sum then counts part of the reserve: it errs
// towards accepting.) A drone stored before the battery model, with no
// FullRangeKm, has its full range worked out as Drone.FullRange does,
// under the model's default reserve, and the same reserve kept.
func FullRangeKm(d *Drone) float64 {
	battery := min(max(d.BatteryPercent, 0), 100)
	if d.FullRangeKm > 0 {
		return d.RangeKm + d.FullRangeKm*(100-battery)/100
	}
	cfg := TrackingConfig{}.WithDefaults()
	return cfg.UsableRangeKm(d.FullRange(cfg), 100)
}

// summaryCellDeg is the side of the cells that group home bases in a
// FleetSummary: about 28 km north–south, so that a city's fleet is a
// handful of cells.
const summaryCellDeg = 0.25

// FleetSummary is what the whole fleet can do, kept small enough to check
// every request against it: the drones' home bases grouped into cells, and
// in each cell the capabilities no other drone of the cell outdoes (the
// Pareto front over payload, size, speed and full range). It answers
// whether any drone could ever serve a request without reading the fleet,
// and errs only towards accepting: a drone's capability counts as its
// cell's best that covers it, flown from whichever of the cell's bases
// serves the request best; a cell of more than maxCellBases distinct bases
// (a fleet whose every drone has a home of its own) counts its bounding
// box as its bases.
//
// A summary only grows (Add); a drone removed or made less able stays
// counted until the summary is built again.
type FleetSummary struct {
	cells  map[[2]int32]*summaryCell
	drones int
}

type summaryCell struct {
	drones                         int
	minLat, maxLat, minLon, maxLon float64
	caps                           []Capability
	// bases are the cell's distinct home bases while there are at most
	// maxCellBases; many once there were more (bases is then nil).
	bases []Location
	many  bool
}

// maxCellBases bounds the bases a cell keeps: a fleet flies from a few
// hubs, each a base to many drones, and a cell of hubs is judged base by
// base; one with more is judged by its bounding box.
const maxCellBases = 32

// NewFleetSummary returns an empty summary.
func NewFleetSummary() *FleetSummary { return &FleetSummary{cells: map[[2]int32]*summaryCell{}} }

// Drones is how many drones were added.
func (s *FleetSummary) Drones() int { return s.drones }

// Add counts drone d (any status but Retired: a drone busy now may serve
// later, a retired one will not).
func (s *FleetSummary) Add(d *Drone) {
	if d.Status == DroneRetired {
		return
	}
	s.drones++
	s.cellOf(d).drones++
	s.AddCapability(d)
}

// AddCapability counts what drone d can do, from its home base, without
// counting d as one more drone: for a drone added already whose
// capabilities changed (a summary may count too much of what drones can
// do, but its count of drones, which the fair-share cap is a share of,
// stays exact).
func (s *FleetSummary) AddCapability(d *Drone) {
	if d.Status == DroneRetired {
		return
	}
	c := s.cellOf(d)
	b := Location{Latitude: d.HomeBase.Latitude, Longitude: d.HomeBase.Longitude}
	c.minLat, c.maxLat = min(c.minLat, b.Latitude), max(c.maxLat, b.Latitude)
	c.minLon, c.maxLon = min(c.minLon, b.Longitude), max(c.maxLon, b.Longitude)
	if !c.many && !slices.Contains(c.bases, b) {
		if len(c.bases) < maxCellBases {
			c.bases = append(c.bases, b)
		} else {
			c.bases, c.many = nil, true
		}
	}
	cp := Capability{PayloadKg: d.MaxPayloadKg, Size: d.MaxPackageSize, SpeedMps: d.CruiseSpeedMps, FullRangeKm: FullRangeKm(d)}
	for _, o := range c.caps {
		if o.covers(cp) {
			return
		}
	}
	c.caps = slices.DeleteFunc(c.caps, func(o Capability) bool { return cp.covers(o) })
	c.caps = append(c.caps, cp)
}

// cellOf returns the cell of d's home base, made if new.
func (s *FleetSummary) cellOf(d *Drone) *summaryCell {
	b := Location{Latitude: d.HomeBase.Latitude, Longitude: d.HomeBase.Longitude} // a base is where it is, at any altitude
	k := cellOf(b)
	c := s.cells[k]
	if c == nil {
		c = &summaryCell{minLat: b.Latitude, maxLat: b.Latitude, minLon: b.Longitude, maxLon: b.Longitude}
		s.cells[k] = c
	}
	return c
}

// MaxSpeedMps is the fastest cruise speed of a drone that can lift p, or 0
// when none can.
func (s *FleetSummary) MaxSpeedMps(p *PackageInfo) float64 {
	best := 0.0
	for _, c := range s.cells {
		for _, cp := range c.caps {
			if cp.carries(p) {
				best = max(best, cp.SpeedMps)
			}
		}
	}
	return best
}

// nearestKm is a lower bound of the distance from loc to any base of the
// cell: the distance to the nearest point of the bases' bounding box.
// reachKm is, for the drones of c, the least distance from a base to
// pickup and the least of base → pickup plus dropoff → base, over its
// bases (its bounding box when it keeps none).
func (c *summaryCell) reachKm(pickup, dropoff Location) (toPickup, roundKm float64) {
	if c.many || len(c.bases) == 0 {
		toPickup = c.nearestKm(pickup)
		return toPickup, toPickup + c.nearestKm(dropoff)
	}
	toPickup, roundKm = math.Inf(1), math.Inf(1)
	for _, b := range c.bases {
		p := DistanceKm(b, pickup)
		toPickup, roundKm = min(toPickup, p), min(roundKm, p+DistanceKm(dropoff, b))
	}
	return toPickup, roundKm
}

func (c *summaryCell) nearestKm(loc Location) float64 {
	p := Location{Latitude: min(max(loc.Latitude, c.minLat), c.maxLat), Longitude: min(max(loc.Longitude, c.minLon), c.maxLon)}
	return DistanceKm(p, loc)
}

// FeasibilityRules bound what is accepted besides what the fleet can do.
type FeasibilityRules struct {
	// PickupTolerance is how far in the past a pickupTime may be (a client's
	// clock, the time the request took to arrive).
	PickupTolerance time.Duration
	// MaxHorizon is how far ahead of now a deadline may be.
	MaxHorizon time.Duration
	// DispatchRadiusKm is how far from a pickup dispatch looks for a drone
	// (handlers.Config.DispatchRadiusKm): a drone based farther away is
	// never sent, whatever its range. 0 sets no bound.
	DispatchRadiusKm float64
}

// Defaults of FeasibilityRules.
const (
	DefaultPickupTolerance = 5 * time.Minute
	DefaultMaxHorizon      = 7 * 24 * time.Hour
)

// WithDefaults fills zero fields.
func (r FeasibilityRules) WithDefaults() FeasibilityRules {
	r.PickupTolerance = positiveOr(r.PickupTolerance, DefaultPickupTolerance)
	r.MaxHorizon = positiveOr(r.MaxHorizon, DefaultMaxHorizon)
	return r
}

// Feasible returns nil when some drone of the fleet could ever serve req
// (with its times filled in), and otherwise an EUNPROCESSABLE *Error that
// names the field at fault and says why. The checks, in order:
//   - pickupTime no further in the past than rules.PickupTolerance, and
//     pickupTime and deadline within rules.MaxHorizon of now;
//   - the pickup and the dropoff admitted by the airspace at pickupTime;
//   - some drone lifting the package's weight and size;
//   - of those, some drone based within rules.DispatchRadiusKm of the
//     pickup whose full-charge range covers home base → pickup → dropoff →
//     home base (the pickup → dropoff leg routed around
//     no-fly zones, the legs from and to the base as the crow flies, which
//     only makes the check more lenient);
//   - of those, some drone fast enough to deliver before the deadline if
//     it were at the pickup at max(now, pickupTime).
//
// An empty fleet says nothing of what the service will fly, so only the
// times and the airspace are checked against it.
func Feasible(req *DeliveryRequest, fleet *FleetSummary, air Airspace, rules FeasibilityRules, now time.Time) error {
	if errs := Infeasible(req, fleet, air, rules, now); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Infeasible returns every reason Feasible finds, each an EUNPROCESSABLE
// *Error naming its field, in Feasible's order, so that a quote can list
// them all at once (none when some drone could serve req). The checks
// that build on another are skipped when it fails: range and deadline
// when the airspace leaves the request no leg, or no single drone lifts
// the package; a time other errors than the airspace's are returned
// alone.
func Infeasible(req *DeliveryRequest, fleet *FleetSummary, air Airspace, rules FeasibilityRules, now time.Time) []error {
	rules = rules.WithDefaults()
	var errs []error
	if req.PickupTime.Before(now.Add(-rules.PickupTolerance)) {
		errs = append(errs, Unprocessable("pickupTime", "is more than %s in the past", rules.PickupTolerance))
	}
	if req.PickupTime.After(now.Add(rules.MaxHorizon)) {
		errs = append(errs, Unprocessable("pickupTime", "is more than %s ahead; deliveries are accepted up to %s in advance", rules.MaxHorizon, now.Add(rules.MaxHorizon).UTC().Format(time.RFC3339)))
	}
	if req.Deadline.After(now.Add(rules.MaxHorizon)) {
		errs = append(errs, Unprocessable("deadline", "is more than %s ahead; deliveries are accepted up to %s in advance", rules.MaxHorizon, now.Add(rules.MaxHorizon).UTC().Format(time.RFC3339)))
	}
	if air == nil {
		air = OpenAirspace{}
	}
	leg, err := Leg(req, air, req.PickupTime)
	routed := err == nil
	if err != nil {
		if !IsCode(err, EUNPROCESSABLE) {
			return []error{err}
		}
		errs = append(errs, err)
	}
	if fleet == nil || fleet.drones == 0 {
		return errs
	}

	p := &req.PackageInfo
	lifts, weighs, sized := false, false, false
	minMissionKm, minPickupKm, maxRangeKm := math.Inf(1), math.Inf(1), 0.0
	reach := false
	start := req.PickupTime
	if start.Before(now) {
		start = now
	}
	earliest := time.Time{}
	for _, c := range fleet.cells {
		toPickup, roundKm := c.reachKm(req.PickupLocation, req.DropoffLocation)
		mission := roundKm + leg.Km
		for _, cp := range c.caps {
			weighs = weighs || p.Weight <= cp.PayloadKg
			sized = sized || p.Size.Rank() <= cp.Size.Rank()
			if !cp.carries(p) || !routed {
				continue
			}
			lifts = true
			minPickupKm, minMissionKm, maxRangeKm = min(minPickupKm, toPickup), min(minMissionKm, mission), max(maxRangeKm, cp.FullRangeKm)
			if mission > cp.FullRangeKm || (rules.DispatchRadiusKm > 0 && toPickup > rules.DispatchRadiusKm) {
				continue
			}
			reach = true
			at := start.Add(PickupHandling + LegDuration(leg.Km, cp.SpeedMps))
			if earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
	}
	if !weighs {
		errs = append(errs, Unprocessable("packageInfo.weight", "%g kg is more than any drone of the fleet can carry", p.Weight))
	}
	if !sized {
		errs = append(errs, Unprocessable("packageInfo.size", "%s is larger than any drone of the fleet carries", p.Size))
	}
	switch {
	case !routed || !weighs || !sized:
	case !lifts:
		errs = append(errs, Unprocessable("packageInfo", "fits no single drone of the fleet: none carries a %s package of %g kg", p.Size, p.Weight))
	case !reach:
		if rules.DispatchRadiusKm > 0 && minPickupKm > rules.DispatchRadiusKm {
			errs = append(errs, Unprocessable("pickupLocation", "is out of range: %.1f km from the nearest base of a drone that can carry the package, and no drone is sent more than %.0f km to a pickup", minPickupKm, rules.DispatchRadiusKm))
		} else if 2*minPickupKm > maxRangeKm {
			errs = append(errs, Unprocessable("pickupLocation", "is out of range: %.1f km from the nearest base of a drone that can carry the package, and none flies more than %.1f km on a full charge", minPickupKm, maxRangeKm))
		} else {
			errs = append(errs, Unprocessable("dropOffLocation", "is out of range: base → pickup → dropoff → base is at least %.1f km for every drone that can carry the package, more than it flies on a full charge", minMissionKm))
		}
	case !req.Deadline.After(now):
		errs = append(errs, Unprocessable("deadline", "has passed: it was %s", req.Deadline.UTC().Format(time.RFC3339)))
	case earliest.After(req.Deadline):
		errs = append(errs, Unprocessable("deadline", "cannot be met: even the fastest drone able to carry the package would deliver at %s at the earliest", ceilSecond(earliest).Format(time.RFC3339)))
	}
	return errs
}

// String describes a capability, for logs and quotes.
func (c Capability) String() string {
	return fmt.Sprintf("%s/%.0fkg/%.0fm/s/%.0fkm", c.Size, c.PayloadKg, c.SpeedMps, c.FullRangeKm)
}

// Clone returns a copy that Add does not change the original through.
func (s *FleetSummary) Clone() *FleetSummary {
	c := &FleetSummary{cells: make(map[[2]int32]*summaryCell, len(s.cells)), drones: s.drones}
	for k, v := range s.cells {
		cell := *v
		cell.caps = slices.Clone(v.caps)
		cell.bases = slices.Clone(v.bases)
		c.cells[k] = &cell
	}
	return c
}
