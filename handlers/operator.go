package handlers

import (
	"context"
	"net/http"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// operatorName is who the history names for an action taken with the
// operator key.
const operatorName = "operator"

// DroneAction serves POST /api/drones/{id}/actions (202): ground or recall
// a drone, even one serving a delivery. That delivery is taken off it
// first and handed on through the queue (domain.Delivery.HandOver:
// dispatched again to another drone, the customer told, the action in its
// history), then the drone is grounded or recalled. Each write is a no-op
// once made, so the same action twice, or a retry after a failure, changes
// nothing more. The body is {action: ground|recall, reason, actionId?}.
func (h *Handlers) DroneAction(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	action, a, err := wire.ParseDroneAction(req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	a.By = operatorName
	ctx = logctx.With(ctx, "droneId", id)
	cur, err := h.store.Fleet.Find(ctx, id)
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = domain.Errorf(domain.ENOTFOUND, "drone %s not found", id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	// The delivery first: once it is handed on, telemetry no longer moves
	// it, and dispatch will not give it this drone again.
	if cur.CurrentDeliveryID != "" {
		if err := h.handOver(ctx, id, cur.CurrentDeliveryID, cur.CurrentGeneration, a); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	now := h.clock.Now()
	var held string
	var gen int
	dr, err := h.store.Fleet.Update(ctx, id, func(dr *domain.Drone) error {
		var err error
		if action == domain.ActionGround {
			held, gen, err = dr.Ground(a.Reason, now)
		} else {
			held, gen, err = dr.Recall(a.Reason, now)
		}
		return err
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if held != "" {
		// Claimed by a delivery in between (dispatch freed it for a
		// moment): that one is handed on too.
		if err := h.handOver(ctx, id, held, gen, a); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	h.log.InfoContext(ctx, "drone "+string(action), "reason", a.Reason)
	return functionapp.JSON(http.StatusAccepted, droneView(dr))
}

// handOver takes deliveryID off droneID (generation gen) and sends it on:
// back to dispatch, or, with its package aboard, ended as returned to the
// sender; the customer is told either way. A delivery handed on already is
// sent on again, which duplicate detection absorbs.
func (h *Handlers) handOver(ctx context.Context, droneID, deliveryID string, gen int, a domain.OperatorAction) error {
	now := h.clock.Now()
	var notes []domain.Notification
	d, err := h.store.Deliveries.Update(ctx, deliveryID, func(cur *domain.Delivery) error {
		notes = nil
		n, _, err := cur.HandOver(droneID, gen, a, now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return err
	}
	return h.sendOn(ctx, d, notes, "the action is recorded but its follow-up could not be queued; send it again")
}

// DeliveryAction serves POST /api/deliveries/{id}/actions (202) with the
// operator key: reassign a delivery to another drone, or abort it, in
// flight or not, as Failed or returned to the sender. The body is
// {action: reassign|abort, reason, outcome?, actionId?}. A repeated
// actionId, or an abort of a failed delivery, is a no-op.
func (h *Handlers) DeliveryAction(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	action, outcome, a, err := wire.ParseDeliveryAction(req.Body)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	a.By = operatorName
	now := h.clock.Now()
	var notes []domain.Notification
	d, err := h.store.Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
		notes = nil
		var n domain.Notification
		var err error
		if action == domain.ActionReassign {
			n, err = cur.Reassign(a, now)
		} else {
			n, err = cur.Abort(outcome, a, now)
		}
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = domain.Errorf(domain.ENOTFOUND, "delivery %s not found", id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ctx = logctx.With(ctx, "deliveryId", id, "correlationId", d.CorrelationID)
	if err := h.sendOn(ctx, d, notes, "the action is recorded but its follow-up could not be queued; send it again"); err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "delivery "+string(action), "reason", a.Reason)
	resp := functionapp.JSON(http.StatusAccepted, viewOf(d))
	resp.Header.Set("Location", "/api/deliveries/"+d.ID)
	return resp
}

// sendOn queues what follows an operator's action on d, with notes, the
// notices it produced (none for a repeat): a delivery sent back to dispatch
// gets a dispatch run for its new generation; one that ended gets the
// compensation a cancel gets (its drone released, its package marked).
func (h *Handlers) sendOn(ctx context.Context, d *domain.Delivery, notes []domain.Notification, retry string) error {
	var next ports.Message
	switch {
	case d.Stage == domain.StageRescheduled:
		next = message(topology.QueueDeliveryRequests, "reschedule",
			wire.Envelope{Operation: wire.OpReschedule, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation})
	case d.Stage == domain.StageFailed:
		next = message(topology.QueueDeliveryRequests, "abort",
			wire.Envelope{Operation: wire.OpCancel, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation})
		next.ID = wire.MessageID(d.ID, 0, "abort")
	default:
		return nil
	}
	if err := h.bus.Publish(ctx, append([]ports.Message{next}, notifyMessages(d, notes)...)...); err != nil {
		return domain.Unavailable(err, "%s", retry)
	}
	return nil
}
