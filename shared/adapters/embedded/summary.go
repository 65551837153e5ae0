package embedded

import (
	"math"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// summaryRebuildEvery bounds how often the fleet summary is rebuilt from
// memory after a drone's capabilities changed (it counts too much until
// then, never too little).
const summaryRebuildEvery = time.Second

// fleetSummary keeps what the fleet can do (domain.FleetSummary) as the
// drones are written, so that no reader lists the fleet: a drone seen for
// the first time is added to a copy at once; one whose capabilities or
// home base changed marks the summary for a rebuild from the capabilities
// the fleet keeps of every drone (fleet.members), at most once per
// summaryRebuildEvery. It learns what the dispatch index learns: the
// drones in the file at open and every write this process commits. The
// fleet's lock guards it.
type fleetSummary struct {
	cur   *domain.FleetSummary // published: never changed, a change publishes a copy
	stale bool
	// now asks for the rebuild at the next read, without waiting out
	// rebuildEvery: a drone was retired, which the operator is told
	// counts no more at once.
	now   bool
	built time.Time
	// rebuildEvery is summaryRebuildEvery but in tests.
	rebuildEvery time.Duration
}

// capabilities is what a summary counts of a drone, kept small because a
// fleet has 100,000 of them.
type capabilities struct {
	baseLat, baseLon, payloadKg, speedMps, fullRangeKm float64
	size                                               domain.PackageSize
	retired                                            bool // counted as no drone at all
}

func capabilitiesOf(d *domain.Drone) capabilities {
	// The full range is worked out from the range and battery a drone
	// reports, whose rounding moves it by a few parts in 10^15 from one
	// report to the next: to the metre, it changes when the drone does.
	return capabilities{baseLat: d.HomeBase.Latitude, baseLon: d.HomeBase.Longitude, payloadKg: d.MaxPayloadKg,
		speedMps: d.CruiseSpeedMps, fullRangeKm: math.Round(domain.FullRangeKm(d)*1000) / 1000, size: d.MaxPackageSize,
		retired: d.Status == domain.DroneRetired}
}

// drone is the part of a drone domain.FleetSummary.Add reads.
func (c capabilities) drone() *domain.Drone {
	// Its range on a full battery is what FullRangeKm worked out.
	d := &domain.Drone{HomeBase: domain.Location{Latitude: c.baseLat, Longitude: c.baseLon}, MaxPayloadKg: c.payloadKg,
		MaxPackageSize: c.size, CruiseSpeedMps: c.speedMps, RangeKm: c.fullRangeKm, BatteryPercent: 100}
	if c.retired {
		d.Status = domain.DroneRetired
	}
	return d
}

// note counts a committed write of a drone whose capabilities are now c,
// and were old before it if known. What a drone can do now is added at
// once (a summary may count too much, never too little: a drone put back
// from retirement serves the next request); what it could do before, if
// it changed, leaves at the next rebuild, which comes at the next read
// when the drone was retired.
func (s *fleetSummary) note(old capabilities, known bool, c capabilities) {
	if s.cur == nil {
		s.cur = domain.NewFleetSummary()
	}
	if known && old == c {
		return
	}
	if known {
		s.stale = true
		// A drone retired, or based elsewhere, is counted still, or in the
		// area it left: the fair-share cap is a share of that count.
		moved := old.baseLat != c.baseLat || old.baseLon != c.baseLon
		s.now = s.now || !old.retired && (c.retired || moved)
	}
	if c.retired {
		return
	}
	next := s.cur.Clone()
	if known && !old.retired {
		next.AddCapability(c.drone()) // counted already: one drone, whatever it can do
	} else {
		next.Add(c.drone())
	}
	s.cur = next
}

// summary returns what the fleet can do, counting every drone of members
// whatever its status (one busy now may serve later).
func (s *fleetSummary) summary(members map[string]member) *domain.FleetSummary {
	if s.cur == nil {
		return domain.NewFleetSummary()
	}
	every := summaryRebuildEvery
	if s.rebuildEvery > 0 {
		every = s.rebuildEvery
	}
	if s.stale && (s.now || time.Since(s.built) >= every) {
		next := domain.NewFleetSummary()
		for _, m := range members {
			next.Add(m.caps.drone())
		}
		s.cur, s.stale, s.now, s.built = next, false, false, time.Now()
	}
	return s.cur
}
