package droneindex

import (
	"reflect"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// indexedDrone is what the dispatch index keeps of a drone: packed, or,
// for the rare drone that does not pack exactly, a copy of the whole.
// Either is never changed once made (a new write indexes a new one), so a
// search may read it without the index's lock.
type indexedDrone struct {
	packed *packedDrone
	whole  *domain.Drone
}

// indexDrone makes the indexedDrone of d.
func indexDrone(d *domain.Drone) indexedDrone {
	if p, ok := pack(d); ok {
		return indexedDrone{packed: p}
	}
	return indexedDrone{whole: d.Clone()}
}

// drone returns a copy of the indexed drone id, which the caller may
// change.
func (x indexedDrone) drone(id string) *domain.Drone {
	if x.whole != nil {
		return x.whole.Clone()
	}
	return x.packed.drone(id)
}

// packedDrone is a drone without its id and without pointers, so that the
// 100,000 drones of a large fleet cost the collector nothing to scan and
// about half the memory of their domain.Drone copies: times as Unix
// nanoseconds, the size and the status as small numbers, optional values
// behind flags. It holds only drones that come back from it exactly
// (pack checks), which is every drone the dispatch index holds in practice:
// an available drone serves no delivery and carries no operator's reason.
type packedDrone struct {
	lat, lon, alt, baseLat, baseLon, baseAlt           float64
	payloadKg, rangeKm, fullRangeKm, speedMps, battery float64
	updatedAt, claimedAfter, lastReport, chargeDue     int64
	generation                                         int32
	size, status                                       uint8
	flags                                              packFlags
}

type packFlags uint8

const (
	hasAlt packFlags = 1 << iota
	hasBaseAlt
	hasClaimedAfter
	hasLastReport
	hasChargeDue
	recalled
	hasUpdatedAt
)

// The sizes and statuses a packed drone can hold, by number; 0 is none.
var (
	packedSizes    = []domain.PackageSize{"", domain.SizeSmall, domain.SizeMedium, domain.SizeLarge}
	packedStatuses = []domain.DroneStatus{"", domain.DroneAvailable, domain.DroneAssigned, domain.DroneInFlight,
		domain.DroneCharging, domain.DroneMaintenance, domain.DroneRetired}
)

// pack packs d, and reports false when the packed drone would not give d
// back exactly (a delivery or a reason it carries, a time with a zone, an
// unknown size or status, or a field added to domain.Drone since).
func pack(d *domain.Drone) (*packedDrone, bool) {
	p := &packedDrone{lat: d.Location.Latitude, lon: d.Location.Longitude, baseLat: d.HomeBase.Latitude,
		baseLon: d.HomeBase.Longitude, payloadKg: d.MaxPayloadKg, rangeKm: d.RangeKm, fullRangeKm: d.FullRangeKm,
		speedMps: d.CruiseSpeedMps, battery: d.BatteryPercent, generation: int32(d.CurrentGeneration)}
	size, status := position(packedSizes, d.MaxPackageSize), position(packedStatuses, d.Status)
	if size < 0 || status < 0 {
		return nil, false
	}
	p.size, p.status = uint8(size), uint8(status)
	if a := d.Location.Altitude; a != nil {
		p.alt, p.flags = *a, p.flags|hasAlt
	}
	if a := d.HomeBase.Altitude; a != nil {
		p.baseAlt, p.flags = *a, p.flags|hasBaseAlt
	}
	if t := d.ClaimedAfterReport; t != nil {
		p.claimedAfter, p.flags = t.UnixNano(), p.flags|hasClaimedAfter
	}
	if t := d.LastTelemetryAt; t != nil {
		p.lastReport, p.flags = t.UnixNano(), p.flags|hasLastReport
	}
	if t := d.ChargeDueAt; t != nil {
		p.chargeDue, p.flags = t.UnixNano(), p.flags|hasChargeDue
	}
	if d.Recalled {
		p.flags |= recalled
	}
	if !d.UpdatedAt.IsZero() {
		p.updatedAt, p.flags = d.UpdatedAt.UnixNano(), p.flags|hasUpdatedAt
	}
	if d.CurrentDeliveryID != "" || d.StatusReason != "" || !reflect.DeepEqual(p.drone(d.ID), d) {
		return nil, false
	}
	return p, true
}

// drone unpacks the drone named id.
func (p *packedDrone) drone(id string) *domain.Drone {
	d := &domain.Drone{ID: id,
		Location:       domain.Location{Latitude: p.lat, Longitude: p.lon},
		HomeBase:       domain.Location{Latitude: p.baseLat, Longitude: p.baseLon},
		MaxPayloadKg:   p.payloadKg,
		MaxPackageSize: packedSizes[p.size],
		RangeKm:        p.rangeKm, FullRangeKm: p.fullRangeKm, CruiseSpeedMps: p.speedMps, BatteryPercent: p.battery,
		Status:            packedStatuses[p.status],
		CurrentGeneration: int(p.generation),
		Recalled:          p.flags&recalled != 0,
	}
	if p.flags&hasAlt != 0 {
		alt := p.alt
		d.Location.Altitude = &alt
	}
	if p.flags&hasBaseAlt != 0 {
		alt := p.baseAlt
		d.HomeBase.Altitude = &alt
	}
	d.ClaimedAfterReport = unpackTime(p.claimedAfter, p.flags&hasClaimedAfter != 0)
	d.LastTelemetryAt = unpackTime(p.lastReport, p.flags&hasLastReport != 0)
	d.ChargeDueAt = unpackTime(p.chargeDue, p.flags&hasChargeDue != 0)
	if p.flags&hasUpdatedAt != 0 {
		d.UpdatedAt = time.Unix(0, p.updatedAt).UTC()
	}
	return d
}

func unpackTime(ns int64, ok bool) *time.Time {
	if !ok {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// position returns the position of v in values, or -1.
func position[T comparable](values []T, v T) int {
	for i, x := range values {
		if x == v {
			return i
		}
	}
	return -1
}
