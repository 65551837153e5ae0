package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// The operator's service areas (/api/serviceareas) and no-fly zones
// (/api/noflyzones): one resource shape, two kinds, each with ids of its
// own. A write shows in the next dispatch of every instance (see
// airspace.Store). Registry binds each kind's PUT, GET, DELETE and list
// routes (PutServiceArea, ListNoFlyZones, …) to putZone, getZone,
// deleteZone and listZones.

// zoneRoute is where the API keeps zones of kind.
func zoneRoute(kind domain.ZoneKind) string {
	if kind == domain.ServiceArea {
		return "/api/serviceareas/"
	}
	return "/api/noflyzones/"
}

func zoneNoun(kind domain.ZoneKind) string {
	if kind == domain.ServiceArea {
		return "service area"
	}
	return "no-fly zone"
}

// zoneFunc serves one route of the zones of one kind.
type zoneFunc func(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response

// forKind binds fn to kind.
func (fn zoneFunc) forKind(kind domain.ZoneKind) functionapp.HTTPFunc {
	return func(ctx context.Context, req *functionapp.Request) *functionapp.Response { return fn(ctx, kind, req) }
}

// zones returns the store's zones, or an error when the backend keeps none.
func (h *Handlers) zones() (ports.Zones, error) {
	if h.store.Zones == nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "this backend keeps no service areas or no-fly zones")
	}
	return h.store.Zones, nil
}

// putZone creates (201) or replaces (200) a zone.
func (h *Handlers) putZone(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, err := h.zones()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	in, err := wire.ParseZone(kind, req.Params["id"], req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now().UTC()
	if in.Ended(now) {
		// Kept, it would only fill the store and the console's map: an
		// operator ending a restriction early deletes it.
		return h.errorResponse(ctx, domain.Unprocessable("validTo", "is %s, which has passed: the zone would never be in force (to end one now, DELETE it)", in.ValidTo.Format(time.RFC3339)))
	}
	in.UpdatedAt = now
	if _, err := zs.Find(ctx, in.Key()); domain.IsCode(err, domain.ENOTFOUND) {
		// A new zone: one query, on a request an operator makes rarely.
		all, err := zs.List(ctx, kind, "", domain.MaxZonesPerKind)
		if err != nil {
			return h.errorResponse(ctx, err)
		}
		if n := len(all) - h.pruneExpired(ctx, zs, kind, all); n >= domain.MaxZonesPerKind {
			return h.errorResponse(ctx, domain.Unprocessable("id", "there are %d %ss already, the most kept; delete one first", n, zoneNoun(kind)))
		}
	} else if err != nil {
		return h.errorResponse(ctx, err)
	}
	created := false
	z, err := zs.Upsert(ctx, in.Key(), func(cur *domain.Zone) (*domain.Zone, error) {
		created = cur == nil
		return in, nil
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, zoneNoun(kind)+" put", "zoneId", z.ID, "created", created)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	resp := functionapp.JSON(status, wire.NewZoneView(z, now))
	resp.Header.Set("Location", zoneRoute(kind)+z.ID)
	return resp
}

// pruneExpired makes room for a new no-fly zone at the limit: it deletes
// those of all whose window has ended (temporary flight restrictions of
// the past, which no dispatch meets again), and returns how many it
// deleted. Service areas are left to the operator: a pause may name one.
func (h *Handlers) pruneExpired(ctx context.Context, zs ports.Zones, kind domain.ZoneKind, all []*domain.Zone) int {
	if kind != domain.NoFlyZone || len(all) < domain.MaxZonesPerKind {
		return 0
	}
	now := h.clock.Now()
	n := 0
	for _, z := range all {
		if !z.Ended(now) {
			continue
		}
		if err := zs.Delete(ctx, z.Key()); err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
			h.log.WarnContext(ctx, "an ended no-fly zone could not be deleted to make room", "zoneId", z.ID, "err", err)
			continue
		}
		h.log.InfoContext(ctx, "ended no-fly zone deleted to make room", "zoneId", z.ID, "validTo", z.ValidTo)
		n++
	}
	return n
}

// zoneAt returns the store's zones and the {id} of a zone route.
func (h *Handlers) zoneAt(req *functionapp.Request) (ports.Zones, string, error) {
	zs, err := h.zones()
	if err != nil {
		return nil, "", err
	}
	id := req.Params["id"]
	return zs, id, domain.ValidID("id", id)
}

func (h *Handlers) getZone(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, id, err := h.zoneAt(req)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	z, err := zs.Find(ctx, domain.ZoneKey(kind, id))
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "%s %s not found", zoneNoun(kind), id))
	}
	return functionapp.JSON(http.StatusOK, wire.NewZoneView(z, h.clock.Now()))
}

func (h *Handlers) deleteZone(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, id, err := h.zoneAt(req)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if kind == domain.ServiceArea {
		if err := h.areaUnpaused(ctx, id); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	if err := zs.Delete(ctx, domain.ZoneKey(kind, id)); err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "%s %s not found", zoneNoun(kind), id))
	}
	h.log.InfoContext(ctx, zoneNoun(kind)+" deleted", "zoneId", id)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// areaUnpaused refuses (409) to let service area id go while a pause in
// force names it: the pause would then hold nothing, and the operator who
// paused the area would not have lifted it. Deleting the pause first, or
// letting it expire, frees the area.
func (h *Handlers) areaUnpaused(ctx context.Context, id string) error {
	if h.store.Pauses == nil {
		return nil
	}
	list, err := h.store.Pauses.List(ctx)
	if err != nil {
		return domain.Unavailable(err, "the service pauses could not be read; retry")
	}
	now := h.clock.Now()
	for _, p := range list {
		if p.AreaID == id && p.ActiveAt(now) {
			return domain.Errorf(domain.ECONFLICT, "service area %s is paused by pause %s; delete the pause first (DELETE /api/pauses/%s)", id, p.ID, p.ID)
		}
	}
	return nil
}

// zoneList is one page of a listing of zones.
type zoneList struct {
	Zones []wire.ZoneView `json:"zones"`
	Next  string          `json:"next,omitempty"` // pass as ?after= for the next page
}

func (h *Handlers) listZones(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	p, err := wire.ParseIDPage(req.Query)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	zs, err := h.zones()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	after := ""
	if p.After != "" {
		after = domain.ZoneKey(kind, p.After)
	}
	got, err := zs.List(ctx, kind, after, p.Limit+1)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	page := zoneList{Zones: []wire.ZoneView{}}
	if len(got) > p.Limit {
		got = got[:p.Limit]
		page.Next = got[p.Limit-1].ID
	}
	now := h.clock.Now()
	for _, z := range got {
		page.Zones = append(page.Zones, wire.NewZoneView(z, now))
	}
	return functionapp.JSON(http.StatusOK, page)
}
