package embedded

import (
	"context"
	"sync"
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
// kept here, at most once per summaryRebuildEvery. It learns what the
// dispatch index learns: the drones in the file at open and every write
// this process commits.
type fleetSummary struct {
	mu     sync.Mutex
	drones map[string]capabilities
	cur    *domain.FleetSummary // published: never changed, a change publishes a copy
	stale  bool
	built  time.Time
	// rebuildEvery is summaryRebuildEvery but in tests.
	rebuildEvery time.Duration
}

// capabilities is what a summary counts of a drone, kept small because a
// fleet has 100,000 of them.
type capabilities struct {
	baseLat, baseLon, payloadKg, speedMps, fullRangeKm float64
	size                                               domain.PackageSize
}

func capabilitiesOf(d *domain.Drone) capabilities {
	return capabilities{baseLat: d.HomeBase.Latitude, baseLon: d.HomeBase.Longitude, payloadKg: d.MaxPayloadKg,
		speedMps: d.CruiseSpeedMps, fullRangeKm: domain.FullRangeKm(d), size: d.MaxPackageSize}
}

// drone is the part of a drone domain.FleetSummary.Add reads.
func (c capabilities) drone() *domain.Drone {
	return &domain.Drone{HomeBase: domain.Location{Latitude: c.baseLat, Longitude: c.baseLon}, MaxPayloadKg: c.payloadKg,
		MaxPackageSize: c.size, CruiseSpeedMps: c.speedMps, RangeKm: c.fullRangeKm}
}

// note counts a committed write of drone d.
func (s *fleetSummary) note(id string, d *domain.Drone) {
	c := capabilitiesOf(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drones == nil {
		s.drones, s.cur = map[string]capabilities{}, domain.NewFleetSummary()
	}
	old, known := s.drones[id]
	if known && old == c {
		return
	}
	s.drones[id] = c
	if known {
		s.stale = true
		return
	}
	if s.stale {
		return // the rebuild counts it
	}
	next := s.cur.Clone()
	next.Add(c.drone())
	s.cur = next
}

// Summary returns what the fleet can do, counting every drone of any
// status (one busy now may serve later).
func (s *fleetSummary) Summary(context.Context) (*domain.FleetSummary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return domain.NewFleetSummary(), nil
	}
	every := summaryRebuildEvery
	if s.rebuildEvery > 0 {
		every = s.rebuildEvery
	}
	if s.stale && time.Since(s.built) >= every {
		next := domain.NewFleetSummary()
		for _, c := range s.drones {
			next.Add(c.drone())
		}
		s.cur, s.stale, s.built = next, false, time.Now()
	}
	return s.cur, nil
}
