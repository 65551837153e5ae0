package handlers

import (
	"context"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// PostConfirmation serves POST /api/deliveries/{id}/confirmations: the
// recipient's proof of delivery, accepted once the package is on its way to
// them or delivered, of the type the delivery asked for.
func (h *Handlers) PostConfirmation(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	c, err := wire.ParseConfirmation(req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	_, err = h.updateOwnDelivery(ctx, id, func(d *domain.Delivery) error {
		if d.Stage != domain.StageHeadedToDropoff && d.Stage != domain.StageCompleted {
			return domain.Errorf(domain.ECONFLICT, "delivery %s is %s: a confirmation comes with the delivery", id, d.Stage)
		}
		if want := d.Request.ConfirmationRequired; want != domain.ConfirmationNone && c.ConfirmationType != want {
			return domain.Invalid("confirmationType", "must be %s for this delivery", want)
		}
		d.Confirmation = c
		d.UpdatedAt = h.clock.Now()
		return nil
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusCreated, c)
}

// GetNotifications serves GET /api/deliveries/{id}/notifications.
func (h *Handlers) GetNotifications(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ns := d.Notifications
	if ns == nil {
		ns = []domain.Notification{}
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "notifications": ns})
}

// GetHistory serves GET /api/deliveries/{id}/history: every stage the
// delivery passed, in order, with when and where.
func (h *Handlers) GetHistory(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	events := d.History
	if events == nil {
		events = []domain.Event{}
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "events": events})
}
