package handlers

import (
	"context"
	"net/http"
	"strconv"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// The operator's service areas (/api/serviceareas) and no-fly zones
// (/api/noflyzones): one resource shape, two kinds, each with ids of its
// own. A write shows in the next dispatch of every instance (see
// airspace.Store).

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

// zones returns the store's zones, or an error when the backend keeps none.
func (h *Handlers) zones() (ports.Zones, error) {
	if h.store.Zones == nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "this backend keeps no service areas or no-fly zones")
	}
	return h.store.Zones, nil
}

// PutServiceArea serves PUT /api/serviceareas/{id}.
func (h *Handlers) PutServiceArea(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.putZone(ctx, domain.ServiceArea, req)
}

// PutNoFlyZone serves PUT /api/noflyzones/{id}.
func (h *Handlers) PutNoFlyZone(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.putZone(ctx, domain.NoFlyZone, req)
}

// GetServiceArea serves GET /api/serviceareas/{id}.
func (h *Handlers) GetServiceArea(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.getZone(ctx, domain.ServiceArea, req)
}

// GetNoFlyZone serves GET /api/noflyzones/{id}.
func (h *Handlers) GetNoFlyZone(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.getZone(ctx, domain.NoFlyZone, req)
}

// DeleteServiceArea serves DELETE /api/serviceareas/{id}.
func (h *Handlers) DeleteServiceArea(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.deleteZone(ctx, domain.ServiceArea, req)
}

// DeleteNoFlyZone serves DELETE /api/noflyzones/{id}.
func (h *Handlers) DeleteNoFlyZone(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.deleteZone(ctx, domain.NoFlyZone, req)
}

// ListServiceAreas serves GET /api/serviceareas?after=&limit=.
func (h *Handlers) ListServiceAreas(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.listZones(ctx, domain.ServiceArea, req)
}

// ListNoFlyZones serves GET /api/noflyzones?after=&limit=.
func (h *Handlers) ListNoFlyZones(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return h.listZones(ctx, domain.NoFlyZone, req)
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
	in.UpdatedAt = h.clock.Now().UTC()
	if _, err := zs.Find(ctx, in.Key()); domain.IsCode(err, domain.ENOTFOUND) {
		// A new zone: one query, on a request an operator makes rarely.
		all, err := zs.List(ctx, kind, "", domain.MaxZonesPerKind)
		if err != nil {
			return h.errorResponse(ctx, err)
		}
		if len(all) >= domain.MaxZonesPerKind {
			return h.errorResponse(ctx, domain.Unprocessable("id", "there are %d %ss already, the most kept; delete one first", len(all), zoneNoun(kind)))
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
	resp := functionapp.JSON(status, wire.NewZoneView(z))
	resp.Header.Set("Location", zoneRoute(kind)+z.ID)
	return resp
}

func (h *Handlers) getZone(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, err := h.zones()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	z, err := zs.Find(ctx, domain.ZoneKey(kind, id))
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = domain.Errorf(domain.ENOTFOUND, "%s %s not found", zoneNoun(kind), id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, wire.NewZoneView(z))
}

func (h *Handlers) deleteZone(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, err := h.zones()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	err = zs.Delete(ctx, domain.ZoneKey(kind, id))
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = domain.Errorf(domain.ENOTFOUND, "%s %s not found", zoneNoun(kind), id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, zoneNoun(kind)+" deleted", "zoneId", id)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// zoneList is one page of a listing of zones.
type zoneList struct {
	Zones []wire.ZoneView `json:"zones"`
	Next  string          `json:"next,omitempty"` // pass as ?after= for the next page
}

func (h *Handlers) listZones(ctx context.Context, kind domain.ZoneKind, req *functionapp.Request) *functionapp.Response {
	zs, err := h.zones()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	limit := 100
	if s := req.Query.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return h.errorResponse(ctx, domain.Invalid("limit", "must be an integer from 1 to 1000"))
		}
		limit = n
	}
	after := ""
	if a := req.Query.Get("after"); a != "" {
		if err := domain.ValidID("after", a); err != nil {
			return h.errorResponse(ctx, err)
		}
		after = domain.ZoneKey(kind, a)
	}
	got, err := zs.List(ctx, kind, after, limit+1)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	page := zoneList{Zones: []wire.ZoneView{}}
	if len(got) > limit {
		got = got[:limit]
		page.Next = got[limit-1].ID
	}
	for _, z := range got {
		page.Zones = append(page.Zones, wire.NewZoneView(z))
	}
	return functionapp.JSON(http.StatusOK, page)
}
