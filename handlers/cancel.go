package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// CancelDelivery serves DELETE /api/deliveryrequests/{id} (204). The
// delivery is Cancelled at once, so every reader sees it; the release of
// its drone and package travels through the queue as a cancel operation.
// A completed or failed delivery cannot be cancelled (409); cancelling a
// cancelled one again is a no-op that queues the compensation again, which
// the step's idempotency absorbs.
func (h *Handlers) CancelDelivery(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	var notes []domain.Notification
	d, err := h.updateOwnDelivery(ctx, id, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Cancel(now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ctx = logctx.With(ctx, "deliveryId", id, "correlationId", d.CorrelationID)
	if notes == nil {
		notes = notificationsOfKind(d, domain.NotifyCancelled)
	}
	// One cancel message whatever the generation: its id leaves the
	// generation out, so cancelling twice queues one compensation.
	cancel := message(topology.QueueDeliveryRequests, "cancel",
		wire.Envelope{Operation: wire.OpCancel, DeliveryID: id, CorrelationID: d.CorrelationID, Generation: d.Generation})
	cancel.ID = wire.MessageID(id, 0, "cancel")
	msgs := append([]ports.Message{cancel},
		notifyMessages(d, notes)...)
	if err := h.publish(ctx, msgs...); err != nil {
		// The queue is down, or the client gave up: the drone is released
		// here (on a context of its own, which a client hanging up does not
		// end), so that it serves again though the client never sends the
		// DELETE again; the notices wait for that repeat, which queues them.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseInRequest)
		defer cancel()
		if more, rerr := h.afterCancel(rctx, d, now); rerr != nil {
			h.log.WarnContext(ctx, "the cancelled delivery's drone could not be released at once; the DELETE sent again releases it, or its drone's next report", "err", rerr)
		} else if len(more) > 0 && h.publish(rctx, more...) != nil {
			h.log.InfoContext(ctx, "the freed drone's wake could not be queued; waiting deliveries find it on their next try")
		}
		return h.errorResponse(ctx, domain.Unavailable(err, "the cancellation is recorded but its notices could not be queued; send the DELETE again"))
	}
	h.log.InfoContext(ctx, "delivery cancelled")
	h.announce(ctx, d)
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// releaseInRequest bounds the release a cancel does itself when its
// follow-up could not be queued.
const releaseInRequest = 10 * time.Second

// RescheduleDelivery serves PATCH /api/deliveryrequests/{id} with any of
// pickupLocation, dropOffLocation, pickupTime and deadline. The delivery
// becomes Rescheduled with a new generation, and dispatch and ETA run again
// through the queue (the old drone is released first). A package already
// picked up, or a delivery that has ended, cannot be rescheduled (409); a
// change no drone could ever serve is refused like such a request (422).
// A change the request already carries (the same PATCH again) answers 202
// and starts no new generation.
func (h *Handlers) RescheduleDelivery(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id, change, err := idAndBody(req, wire.ParseReschedule)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	changed := false
	d, err := h.updateOwnDelivery(ctx, id, func(cur *domain.Delivery) error {
		changed = false
		before := cur.Request.PickupTime
		if err := cur.Reschedule(change, now, h.cfg.Feasibility.MaxHorizon); err != nil {
			return err
		}
		changed = true
		check := cur.Request
		if (change.PickupTime == nil || change.PickupTime.Equal(before)) && check.PickupTime.Before(now) {
			// A change that leaves the pickup time alone (by leaving it
			// out, or by sending back the one stored, as a client that
			// reads, edits and writes the request does) is judged from
			// now: a delivery that has waited since its pickup time is
			// still to be picked up as soon as a drone can, and its old
			// pickup time is no mistake of this request's.
			check.PickupTime = now
		}
		return h.feasible(ctx, &check)
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ctx = logctx.With(ctx, "deliveryId", id, "correlationId", d.CorrelationID)
	// A change the request already carries (a retry) queues its generation's
	// message again only while that generation waits to be dispatched, in
	// case the first attempt stopped before queueing it; the bus drops the
	// copy of one that was queued.
	if changed || d.Stage == domain.StageRescheduled {
		m := message(topology.QueueDeliveryRequests, "reschedule",
			wire.Envelope{Operation: wire.OpReschedule, DeliveryID: id, CorrelationID: d.CorrelationID, Generation: d.Generation})
		if err := h.publish(ctx, m); err != nil {
			return h.errorResponse(ctx, domain.Unavailable(err, "the reschedule is recorded but could not be queued"))
		}
	}
	if changed {
		h.log.InfoContext(ctx, "delivery rescheduled", "generation", d.Generation)
		h.announce(ctx, d)
	}
	resp := functionapp.JSON(http.StatusAccepted, accepted{DeliveryID: d.ID, TrackingID: d.TrackingID, DeliveryRequest: d.Request})
	resp.Header.Set("Location", "/api/deliveries/"+d.ID)
	return resp
}
