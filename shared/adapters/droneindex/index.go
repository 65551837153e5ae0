// Package droneindex keeps drones by position in memory, as both fleet
// adapters do for dispatch (the embedded one from its writes and the file,
// the Cosmos DB one from the container's change feed): a geo.Index whose
// values are the drones packed without pointers (packedDrone), so that a
// fleet of 100,000 costs about half the memory of domain.Drone copies and
// nothing for the collector to scan.
package droneindex

import (
	"context"
	"iter"
	"slices"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
)

// Index holds drones by id and position. It is safe for concurrent use;
// ordering writes of one drone is the caller's (the adapters do it by
// version).
type Index struct {
	x *geo.Index[indexedDrone]
}

// New returns an empty index.
func New() *Index { return &Index{x: geo.NewIndex[indexedDrone]()} }

// Put indexes drone d under id, or moves it; d is copied, so the caller
// may change it afterwards.
func (i *Index) Put(id string, d *domain.Drone) { i.x.Upsert(id, d.Location.Point(), indexDrone(d)) }

// Remove takes drone id out; it is a no-op when the drone is absent.
func (i *Index) Remove(id string) { i.x.Remove(id) }

// Get returns a copy of drone id, which the caller may change.
func (i *Index) Get(id string) (*domain.Drone, bool) {
	_, x, ok := i.x.Get(id)
	if !ok {
		return nil, false
	}
	return x.drone(id), true
}

// Has reports whether drone id is indexed.
func (i *Index) Has(id string) bool { return i.x.Has(id) }

// Len returns how many drones are indexed.
func (i *Index) Len() int { return i.x.Len() }

// Nearest yields copies of the indexed drones, nearest to loc first, with
// their great-circle distance in km. It holds no lock while the caller's
// loop body runs, so the body may Put and Remove (to claim the drone it
// was given, say); a drone taken out since the search read its cell is
// skipped, and one that moved during the walk is yielded once.
func (i *Index) Nearest(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return func(yield func(*domain.Drone, float64) bool) {
		var seen idSet
		for it, km := range i.x.Nearest(loc.Point()) {
			if ctx.Err() != nil {
				return
			}
			if !i.x.Has(it.ID) || !seen.add(it.ID) {
				continue
			}
			if !yield(it.Value.drone(it.ID), km) {
				return
			}
		}
	}
}

// idSet stays a short slice while small, because most callers take one or
// two drones and a map would cost more than the search that found them.
type idSet struct {
	few  []string
	many map[string]struct{}
}

// add reports whether id was new.
func (s *idSet) add(id string) bool {
	if s.many != nil {
		if _, ok := s.many[id]; ok {
			return false
		}
		s.many[id] = struct{}{}
		return true
	}
	if slices.Contains(s.few, id) {
		return false
	}
	if len(s.few) < 16 {
		s.few = append(s.few, id)
		return true
	}
	s.many = make(map[string]struct{}, 4*len(s.few))
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[id] = struct{}{}
	return true
}
