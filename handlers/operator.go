package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

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
// history), then the drone is grounded or recalled. Resume puts a grounded
// drone back in service and charge puts an idle one on charge, each where
// it is, with its battery as reported. Each write is a no-op once made, so
// the same action twice, or a retry after a failure, changes nothing more.
// The body is {action: ground|recall|resume|charge, reason, actionId?}.
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
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "drone %s not found", id))
	}
	if cur.Status == domain.DroneRetired {
		// Grounding or recalling it would put it back in the fleet.
		return h.errorResponse(ctx, domain.Errorf(domain.ECONFLICT, "drone %s is retired; put it back first (PUT /api/drones/%s with a status)", id, id))
	}
	deliveryID, gen := cur.CurrentDeliveryID, cur.CurrentGeneration
	if !action.TakesTheDrone() {
		deliveryID, gen = "", 0 // it hands on nothing: a drone serving one is refused
	}
	asked := h.clock.Now()
	if deliveryID != "" {
		// Two writes follow (the delivery's, then the drone's): the queued
		// message repeats both, so a call that stops between them is
		// finished all the same.
		if err := h.publish(ctx, droneActionMessage(id, action, a, deliveryID, gen, asked)); err != nil {
			return h.errorResponse(ctx, domain.Unavailable(err, "the action could not be queued; send it again"))
		}
	}
	dr, err := h.applyDroneAction(ctx, id, action, a, deliveryID, gen, asked)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "drone "+string(action), "reason", a.Reason)
	h.consoleChanged(ctx)
	return functionapp.JSON(http.StatusAccepted, h.droneView(dr))
}

// applyDroneAction grounds or recalls drone id, handing on first the
// delivery it held (deliveryID, in generation gen; none when empty), and
// then any delivery that claimed it in between; or resumes or charges it.
// Each write is a no-op once made, and a ground or recall asked at asked
// is one for a drone the operator has put back in service since (its
// queued repeat coming late).
func (h *Handlers) applyDroneAction(ctx context.Context, id string, action domain.DroneAction, a domain.OperatorAction, deliveryID string, gen int, asked time.Time) (*domain.Drone, error) {
	// The delivery first: once it is handed on, telemetry no longer moves
	// it, and dispatch will not give it this drone again.
	aboard := false
	if deliveryID != "" {
		d, err := h.handOver(ctx, id, deliveryID, gen, a)
		if err != nil {
			return nil, err
		}
		// Ended with its package aboard this drone: the drone takes the
		// package home, where the operator takes it (a grounded one stays
		// grounded there). Grounded where it was, it was put back in
		// service there with the package aboard.
		aboard = d != nil && d.EndedWithPackageAboard() && d.DroneID == id
	}
	now := h.clock.Now()
	var held string
	var heldGen int
	dr, err := h.store.Fleet.Update(ctx, id, func(dr *domain.Drone) error {
		var err error
		if action.TakesTheDrone() && dr.ResumedSince(asked) {
			return domain.ErrNoChange
		}
		switch action {
		case domain.ActionGround:
			held, heldGen, err = dr.Ground(a.Reason, h.cfg.Tracking, now)
			if err == nil && aboard {
				if _, _, rerr := dr.Recall(a.Reason, "", h.cfg.Tracking, now); rerr != nil && !errors.Is(rerr, domain.ErrNoChange) {
					err = rerr
				}
			}
		case domain.ActionRecall:
			held, heldGen, err = dr.Recall(a.Reason, deliveryID, h.cfg.Tracking, now)
		case domain.ActionResume:
			err = dr.Resume(a.Reason, h.cfg.Tracking, now)
		case domain.ActionCharge:
			err = dr.Charge(a.Reason, h.cfg.Tracking, now)
		default:
			err = domain.Invalid("action", "%q is not a drone action", action)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if action == domain.ActionResume {
		// Back in service: the waiting delivery it lets dispatch serve
		// first need not wait for its next retry.
		wakes, err := h.wakeForFreed(ctx, dr, "", now)
		if err != nil {
			return nil, err
		}
		if len(wakes) > 0 {
			if err := h.publish(ctx, wakes...); err != nil {
				return nil, domain.Unavailable(err, "the drone is back in service but dispatch could not be woken; send the action again")
			}
		}
	}
	// A drone recalled at its home base lands at once, and on charge when
	// low. The check is sent whether this call or an earlier one put it
	// there: its id names the due time, so a charge under way keeps one.
	if err := h.publishChargeCheck(ctx, nil, dr); err != nil {
		return nil, domain.Unavailable(err, "the drone is %sed but its charge check could not be queued; send the action again", action)
	}
	if held != "" {
		// Claimed by a delivery in between (dispatch freed it for a
		// moment): that one is handed on too.
		if _, err := h.handOver(ctx, id, held, heldGen, a); err != nil {
			return nil, err
		}
	}
	return dr, nil
}

// droneActionMessage asks the tracking step to finish action on droneID,
// which held deliveryID in generation gen (finishDroneAction). Its id names
// the drone, the delivery, the generation and the action, so the same
// action repeated sends one.
func droneActionMessage(droneID string, action domain.DroneAction, a domain.OperatorAction, deliveryID string, gen int, asked time.Time) ports.Message {
	body, _ := json.Marshal(wire.DroneActionMessage{DroneID: droneID, Action: string(action), Reason: a.Reason, By: a.By,
		ActionID: a.ActionID, DeliveryID: deliveryID, Generation: gen, At: asked.UTC()}) // always encodes
	return ports.Message{
		ID:            wire.MessageID(droneID, 0, string(action)+":"+deliveryID+":g"+strconv.Itoa(gen)),
		Queue:         topology.QueueDroneTelemetry,
		Body:          body,
		CorrelationID: droneID,
		Operation:     string(wire.OpDroneAction),
	}
}

// finishDroneAction runs a queued drone action (wire.OpDroneAction): the
// hand-over of the delivery and the drone's write, whichever the call
// that queued it did not finish; both are no-ops once made.
func (h *Handlers) finishDroneAction(ctx context.Context, msg *ports.Delivered) error {
	m, err := wire.ParseDroneActionMessage(msg.Body)
	if err != nil {
		return err
	}
	ctx = logctx.With(ctx, "droneId", m.DroneID, "deliveryId", m.DeliveryID)
	a := domain.OperatorAction{Name: m.Action, By: m.By, Reason: m.Reason, ActionID: m.ActionID}
	_, err = h.applyDroneAction(ctx, m.DroneID, domain.DroneAction(m.Action), a, m.DeliveryID, m.Generation, m.At)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil // the drone was removed
	}
	if err != nil && !errors.Is(err, ports.ErrSkip) {
		return fmt.Errorf("finish the %s of drone %s: %w", m.Action, m.DroneID, err)
	}
	return nil
}

// handOver takes deliveryID off droneID (generation gen) and sends it on:
// back to dispatch, or, with its package aboard, ended as returned to the
// sender; the customer is told either way. A delivery handed on already is
// sent on again, which duplicate detection absorbs. It returns the delivery
// as stored (nil when it is gone).
func (h *Handlers) handOver(ctx context.Context, droneID, deliveryID string, gen int, a domain.OperatorAction) (*domain.Delivery, error) {
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
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d, h.sendOn(ctx, d, notes, "the action is recorded but its follow-up could not be queued; send it again")
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
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "delivery %s not found", id))
	}
	ctx = logctx.With(ctx, "deliveryId", id, "correlationId", d.CorrelationID)
	if notes == nil {
		notes = unsentNotice(d, action)
	}
	if err := h.sendOn(ctx, d, notes, "the action is recorded but its follow-up could not be queued; send it again"); err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "delivery "+string(action), "reason", a.Reason)
	h.consoleChanged(ctx)
	resp := functionapp.JSON(http.StatusAccepted, viewOf(d))
	resp.Header.Set("Location", "/api/deliveries/"+d.ID)
	return resp
}

// unsentNotice is the notice of a delivery action found made already (the
// same action again), while the delivery is still as that action left it:
// the repeat may be the retry of a call whose follow-up could not be queued
// (503, "send it again"), so its notice is queued again with the follow-up
// (under the notice's id, so a copy of one that went is dropped). None once
// the delivery has moved on.
func unsentNotice(d *domain.Delivery, action domain.DeliveryAction) []domain.Notification {
	var kind string
	switch {
	case action == domain.ActionReassign && d.Stage == domain.StageRescheduled && d.DroneID != "" && d.DroneID == d.AvoidDroneID:
		kind = domain.NotifyReassigned
	case action == domain.ActionAbort && d.Stage == domain.StageFailed:
		kind = domain.NotifyFailed
	default:
		return nil
	}
	if n := len(d.Notifications); n > 0 && d.Notifications[n-1].Kind == kind {
		return d.Notifications[n-1:]
	}
	return nil
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
	if err := h.publish(ctx, append([]ports.Message{next}, notifyMessages(d, notes)...)...); err != nil {
		return domain.Unavailable(err, "%s", retry)
	}
	return nil
}
