package airspace

import (
	"context"
	"fmt"
	"sync"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// MaxZones bounds the zones one snapshot loads: the handlers keep each kind
// to domain.MaxZonesPerKind, and concurrent creations can pass that bound
// by a few at most. A store that holds more fails Current rather than
// route over a part of them.
const MaxZones = 4 * domain.MaxZonesPerKind

// Store is the ports.Airspace of a store's zones. Every Current asks for
// the zones' version token (a SQLite row; on Cosmos DB a counter kept from
// the airspace container's change feed) and reloads the zones only when it
// changed, so a write through this process shows in its next Current, and
// one through any other with no restart: at once on SQLite, within the
// change feed's poll (a second by default) on Cosmos DB. Within a unit of
// work (ports.WithStore) it asks that unit's zones, which on SQLite answer
// the version this process knows and check it when the unit commits.
type Store struct {
	zones ports.Zones

	mu      sync.Mutex // one reload at a time
	version string
	snap    domain.Airspace
}

var _ ports.Airspace = (*Store)(nil)

// NewStore returns the airspace kept in zones.
func NewStore(zones ports.Zones) *Store { return &Store{zones: zones} }

// For returns the airspace of st: its zones when it keeps them, else the
// open airspace.
func For(st ports.Store) ports.Airspace {
	if st.Zones == nil {
		return Open{}
	}
	return NewStore(st.Zones)
}

// Open is the ports.Airspace of a store without zones.
type Open struct{}

// Current implements ports.Airspace.
func (Open) Current(context.Context) (domain.Airspace, error) { return domain.OpenAirspace{}, nil }

// Current implements ports.Airspace.
func (s *Store) Current(ctx context.Context) (domain.Airspace, error) {
	zones := s.zones
	if st := ports.StoreFrom(ctx, ports.Store{}); st.Zones != nil {
		zones = st.Zones
	}
	v, err := zones.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("airspace version: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && s.version == v {
		return s.snap, nil
	}
	// Zones written after the version was read may be loaded too; the
	// snapshot is kept under the older version and so reloaded next time.
	zs, err := s.zones.List(ctx, "", "", MaxZones+1)
	if err != nil {
		return nil, fmt.Errorf("airspace zones: %w", err)
	}
	if len(zs) > MaxZones {
		return nil, domain.Errorf(domain.EINTERNAL, "the store holds more than %d zones", MaxZones)
	}
	var snap domain.Airspace = domain.OpenAirspace{}
	if len(zs) > 0 {
		snap = New(zs)
	}
	s.version, s.snap = v, snap
	return snap, nil
}
