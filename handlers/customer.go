package handlers

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// confirmationView is a proof of delivery as the delivery shows it: all
// but the blob, which href serves.
type confirmationView struct {
	domain.Confirmation
	Href string `json:"href"`
}

func confirmationOf(d *domain.Delivery) *confirmationView {
	if d.Confirmation == nil {
		return nil
	}
	return &confirmationView{Confirmation: *d.Confirmation, Href: "/api/deliveries/" + d.ID + "/confirmation"}
}

// PostConfirmation serves POST /api/deliveries/{id}/confirmations: the
// recipient's proof of delivery, taken once (a second is 409) and only for
// a Completed delivery (409 before), of the type the delivery asked for
// unless it asked for None (422), given within the configured radius of
// the dropoff (422), with a blob of a type the confirmation takes (422) and
// at most wire.MaxConfirmationBlobBytes (413). It answers 201 with the
// confirmation as GET /api/deliveries/{id} shows it, and a Location
// header where its blob can be read.
//
// The confirmation is judged on the delivery as read before anything is
// written, so one that is refused writes nothing, not even its blob. The
// blob is then stored under its hash, and the delivery updated, judging it
// again: of two confirmations racing, one wins and the other gets 409.
// Confirmations of one delivery take turns in this process (h.confirming),
// so one racing another here reads the winner's delivery and stores
// nothing. One that loses to another instance has stored its blob by then,
// and deletes it again (dropLosingBlob, best effort).
func (h *Handlers) PostConfirmation(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id, p, err := idAndBody(req, wire.ParseConfirmation)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	acct, err := callerAccount(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	unlock, err := h.confirming.Take(ctx, id)
	if err != nil {
		return h.errorResponse(ctx, domain.Unavailable(err, "the confirmation could not be stored; send it again"))
	}
	d, err := h.confirm(ctx, id, acct, p)
	unlock()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "delivery confirmed", "deliveryId", id, "confirmationType", p.Confirmation.ConfirmationType)
	h.announce(ctx, d)
	v := confirmationOf(d)
	resp := functionapp.JSON(http.StatusCreated, v)
	resp.Header.Set("Location", v.Href)
	return resp
}

// confirm is PostConfirmation once its turn has come: it judges p on the
// delivery as read, stores its blob, and confirms the delivery.
func (h *Handlers) confirm(ctx context.Context, id, acct string, p *wire.ParsedConfirmation) (*domain.Delivery, error) {
	d, err := h.findDelivery(ctx, id)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	if err := d.Confirm(p.Confirmation, h.cfg.Confirmation, now); err != nil {
		return nil, err
	}
	var blobID string
	if p.Blob != nil {
		blob := &domain.ConfirmationBlob{ID: domain.ConfirmationBlobID(id, p.Confirmation.BlobSHA256), DeliveryID: id, OwnerID: acct,
			ContentType: p.Confirmation.BlobType, Data: p.Blob, CreatedAt: now}
		// The id is the content's hash: one there already holds this blob.
		if err := h.store.Confirmations.Create(ctx, blob.ID, blob); err != nil && !domain.IsCode(err, domain.ECONFLICT) {
			return nil, domain.Unavailable(err, "the confirmation could not be stored; send it again")
		}
		blobID = blob.ID
	}
	d, err = h.updateOwnDelivery(ctx, id, func(cur *domain.Delivery) error {
		return cur.Confirm(p.Confirmation, h.cfg.Confirmation, now)
	})
	if err != nil && blobID != "" {
		h.dropLosingBlob(ctx, id, blobID, p.Confirmation.BlobSHA256)
	}
	return d, err
}

// dropLosingBlob deletes the blob stored under blobID for a confirmation
// of delivery id that was not taken, when the delivery is confirmed with
// another blob: a delivery is confirmed once, so none will ever name this
// one. A blob whose delivery is not confirmed, or is confirmed with this
// very content, may yet be read and is left alone. It is best effort: a
// failure is logged and leaves the blob.
func (h *Handlers) dropLosingBlob(ctx context.Context, id, blobID, sha string) {
	// The request may be over; the clean-up is not the caller's to cancel.
	ctx = context.WithoutCancel(ctx)
	d, err := h.store.Deliveries.Find(ctx, id)
	if err != nil {
		h.log.WarnContext(ctx, "confirmation blob of a refused confirmation left stored", "deliveryId", id, "blobId", blobID, "err", err)
		return
	}
	if d.Confirmation == nil || d.Confirmation.BlobSHA256 == sha {
		return
	}
	err = h.store.Confirmations.Delete(ctx, blobID)
	switch {
	case domain.IsCode(err, domain.ENOTFOUND):
		return
	case err != nil:
		h.log.WarnContext(ctx, "confirmation blob of a refused confirmation left stored", "deliveryId", id, "blobId", blobID, "err", err)
		return
	}
	h.log.InfoContext(ctx, "confirmation blob of a refused confirmation deleted", "deliveryId", id, "blobId", blobID)
}

// confirmationWithBlob is GET /api/deliveries/{id}/confirmation.
type confirmationWithBlob struct {
	DeliveryID string `json:"deliveryId"`
	confirmationView
	// ConfirmationBlob is the blob as it was sent, a data: URI; absent for
	// a confirmation without one.
	ConfirmationBlob string `json:"confirmationBlob,omitempty"`
}

// GetConfirmation serves GET /api/deliveries/{id}/confirmation: the proof
// of delivery with its blob. A delivery without one, like another
// account's, is 404.
func (h *Handlers) GetConfirmation(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	v := confirmationOf(d)
	if v == nil {
		return h.errorResponse(ctx, domain.Errorf(domain.ENOTFOUND, "delivery %s has no confirmation", d.ID))
	}
	out := confirmationWithBlob{DeliveryID: d.ID, confirmationView: *v}
	if sha := d.Confirmation.BlobSHA256; sha != "" {
		b, err := h.store.Confirmations.Find(ctx, domain.ConfirmationBlobID(d.ID, sha))
		if err != nil {
			// Stored before the delivery named it: missing is a fault.
			return h.errorResponse(ctx, fmt.Errorf("confirmation blob of %s: %w", d.ID, err))
		}
		out.ConfirmationBlob = "data:" + b.ContentType + ";base64," + base64.StdEncoding.EncodeToString(b.Data)
	}
	return functionapp.JSON(http.StatusOK, out)
}

// GetNotifications serves GET /api/deliveries/{id}/notifications.
func (h *Handlers) GetNotifications(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "notifications": orEmpty(d.Notifications)})
}

// GetHistory serves GET /api/deliveries/{id}/history: every stage the
// delivery passed, in order, with when and where, and the operator's
// actions on it. Its business reads it, and so does the operator, whose
// actions it audits.
func (h *Handlers) GetHistory(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	d, err := h.findDelivery(ctx, req.Params["id"])
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, map[string]any{"deliveryId": d.ID, "events": orEmpty(d.History)})
}

// orEmpty is s, or an empty slice for nil, so that a list the API
// answers encodes as [] and never as null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
