package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// issuedDroneKey is the 201 body of POST /api/drones/{id}/keys: the only
// time the key is shown.
type issuedDroneKey struct {
	DroneID   string    `json:"droneId"`
	Prefix    string    `json:"prefix"`
	APIKey    string    `json:"apiKey"`
	CreatedAt time.Time `json:"createdAt"`
}

// CreateDroneKey serves POST /api/drones/{id}/keys (201) with the operator
// key: a device key for the drone, shown only in this answer. It is made
// and stored like a business's API key (a SHA-256 hash under its prefix,
// newAPIKey) and authenticates only POST /api/drones/{id}/telemetry of
// this drone, under a rate bucket of the drone's own. The body, if any,
// must be an empty JSON object.
func (h *Handlers) CreateDroneKey(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	if len(req.Body) > 0 {
		if err := wire.DecodeStrict(req.Body, &struct{}{}); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	if _, err := h.store.Fleet.Find(ctx, id); err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "drone %s not found", id))
	}
	now := h.clock.Now()
	plain, key := newAPIKey("", now)
	key.DroneID = id
	if err := h.storeKey(ctx, key); err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "drone key issued", "droneId", id, "keyPrefix", key.Prefix)
	resp := functionapp.JSON(http.StatusCreated, issuedDroneKey{DroneID: id, Prefix: key.Prefix, APIKey: plain, CreatedAt: now})
	resp.Header.Set("Location", "/api/drones/"+id+"/keys/"+key.Prefix)
	resp.Header.Set("Cache-Control", "no-store")
	return resp
}

// RevokeDroneKey serves DELETE /api/drones/{id}/keys/{prefix} (204) with
// the operator key. Revoking a revoked key again is a no-op; a prefix that
// is not a key of this drone is 404. The key stops working in this process
// at once and in others within the key cache's TTL.
func (h *Handlers) RevokeDroneKey(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id, prefix := req.Params["id"], req.Params["prefix"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	if err := domain.ValidID("prefix", prefix); err != nil {
		return h.errorResponse(ctx, err)
	}
	notFound := domain.Errorf(domain.ENOTFOUND, "key %s of drone %s not found", prefix, id)
	if !domain.ValidKeyPrefix(prefix) {
		return h.errorResponse(ctx, notFound)
	}
	err := h.revokeKey(ctx, prefix, h.clock.Now(), notFound, func(k *domain.APIKey) bool { return k.DroneID == id })
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = notFound
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "drone key revoked", "droneId", id, "keyPrefix", prefix)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}
