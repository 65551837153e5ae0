package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// ScheduleDrone assigns the drone that serves a delivery best by the
// dispatch rule (domain.Choose: the earliest delivery ETA that meets the
// deadline, then the nearest). It
// reads delivery-requests, where cancel and reschedule operations arrive too:
// a cancel releases the drone the delivery held (compensation), a
// reschedule releases it and dispatches again.
//
// Assignment is three writes so that a crash between any two of them
// neither leaks a drone nor books a second one: the delivery first reserves
// a candidate (DroneID), then the drone is claimed with a conditional write,
// then the delivery records the assignment (DroneAssignedAt). A redelivered
// message finds the reservation and finishes it.
func (h *Handlers) ScheduleDrone(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	ctx, env, d, err := h.loadEnvelope(ctx, msg)
	if err != nil {
		return nil, err
	}
	switch env.Operation {
	case wire.OpCancel:
		// Cancelled by the business, or aborted by the operator (Failed).
		if d.Stage != domain.StageCancelled && d.Stage != domain.StageFailed {
			return nil, nil // nothing was cancelled; a stray message
		}
		return h.afterCancel(ctx, d, h.clock.Now())
	case wire.OpDelivery, wire.OpReschedule:
	default:
		return nil, &domain.Permanent{Err: domain.Invalid("operation", "%s is not handled by this step", env.Operation)}
	}
	now := h.clock.Now()
	if env.Generation != d.Generation {
		h.log.InfoContext(ctx, "stale message of an earlier schedule; ignored", "generation", env.Generation)
		return h.staleWake(ctx, env, d, now)
	}
	if d.Stage.Terminal() {
		h.log.InfoContext(ctx, "delivery already ended; nothing to schedule", "stage", d.Stage)
		wakes, err := h.letGo(ctx, d, now)
		if err != nil {
			return nil, err
		}
		more, err := h.wokenInVain(ctx, env, d, now)
		return append(wakes, more...), err
	}
	if d.Generation > d.ResetGeneration {
		if d, err = h.resetAssignment(ctx, d); err != nil {
			return nil, err
		}
		if d.Stage.Terminal() {
			// Cancelled or aborted since it was read (an update runs its
			// change on the stored document): the end's own message
			// releases its drone.
			h.log.InfoContext(ctx, "delivery ended meanwhile; nothing to schedule", "stage", d.Stage)
			return nil, nil
		}
	}
	var freed []ports.Message
	if d.PreviousDroneID != "" {
		// Every run of this generation repeats the release of the old
		// generation's drone, so a crash right after the reset cannot
		// strand it; the release is a no-op once done.
		if freed, err = h.releaseOldDrone(ctx, d, now); err != nil {
			return nil, err
		}
	}
	out, err := h.dispatch(ctx, msg, env, d, now)
	if err != nil {
		return nil, err
	}
	return append(freed, out...), nil
}

// dispatch is ScheduleDrone's run for a delivery of the message's
// generation that has not ended: it finishes a redelivered assignment,
// books a pickup ahead, holds one a pause covers, or assigns a drone, or
// else has the delivery wait for one.
func (h *Handlers) dispatch(ctx context.Context, msg *ports.Delivered, env *wire.Envelope, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	if d.DroneAssignedAt != nil {
		// A redelivery: a drone taken from another delivery has that
		// delivery's dispatch sent again, in case the run that took it
		// stopped before its messages went out.
		msgs, err := h.preemptedMessages(ctx, d)
		if err != nil {
			return nil, err
		}
		on, err := h.wokenInVain(ctx, env, d, now)
		if err != nil {
			return nil, err
		}
		return append(append(msgs, on...), nextMessage(d, topology.QueueDroneScheduled, stepScheduled)), nil
	}

	if d.DroneID == "" {
		if msgs, booked, err := h.book(ctx, d, now); err != nil || booked {
			if err != nil {
				return nil, err
			}
			// Booked: it waits for its dispatch time, not for a drone.
			on, err := h.leaveBoard(ctx, d, now)
			return append(msgs, on...), err
		}
	}
	if d.DroneID == "" {
		// A service pause holds the deliveries waiting at its pickups.
		hold, err := h.pausedAt(ctx, d.Request.PickupLocation, now)
		if err != nil {
			return nil, err
		}
		// The deadline passed while a pause held it (its hold retries come
		// at the deadline at the latest): no drone can meet it now, and the
		// reason is the pause, whether or not it has ended.
		pastHeld := (hold != nil || d.HeldReason != "") && !now.Before(d.Request.Deadline)
		if hold != nil || pastHeld {
			on, err := h.leaveBoard(ctx, d, now)
			if err != nil {
				return nil, err
			}
			var msgs []ports.Message
			if pastHeld {
				reason := d.HeldReason
				if hold != nil {
					reason = hold.Reason
				}
				msgs, err = h.fail(ctx, d.ID, heldPastDeadline(reason))
			} else {
				msgs, err = h.hold(ctx, d, env, hold, msg.DeliveryCount > 1, now)
			}
			return append(on, msgs...), err
		}
		if d.HeldReason != "" {
			if d, err = h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error { return cur.Unhold(now) }); err != nil {
				return nil, fmt.Errorf("resume the held delivery: %w", err)
			}
		}
	}
	d, wakes, err := h.assign(ctx, d, msg.DeliveryCount > 1, now)
	if err != nil {
		return nil, err
	}
	if d.DroneAssignedAt != nil {
		on, err := h.leaveBoard(ctx, d, now)
		if err != nil {
			return nil, err
		}
		wakes = append(wakes, on...)
		h.log.InfoContext(ctx, "drone assigned", "droneId", d.DroneID)
		h.consoleChanged(ctx)
		return append(wakes, nextMessage(d, topology.QueueDroneScheduled, stepScheduled)), nil
	}
	if d.Stage.Terminal() {
		on, err := h.leaveBoard(ctx, d, now)
		return append(wakes, on...), err
	}
	if env.Wake {
		// Woken, and no drone taken: the delivery's own retries go on (this
		// run adds none), nothing is left to it or woken for it until the
		// next (waiter.wakes), and the wake goes on to a delivery that can
		// take a drone. One a pause held was taken off the board, and a
		// pause's end woke it: it goes back on, for the next drone freed
		// to wake.
		h.waiting.addIfAbsent(d, env.Attempt)
		h.waiting.wakeRan(d, env.Attempt)
		on, err := h.wakeWaiting(ctx, domain.AreaOf(d.Request.PickupLocation), d.ID, now)
		return append(wakes, on...), err
	}

	// No drone now: wait in the area's queue and try again later, backing
	// off, while the deadline allows.
	delay := h.backoff(env.Attempt)
	if at := now.Add(delay); !at.Before(d.Request.Deadline) {
		on, err := h.leaveBoard(ctx, d, now)
		if err != nil {
			return nil, err
		}
		msgs, err := h.fail(ctx, d.ID, h.noDroneReason(ctx, &d.Request, now))
		return append(append(wakes, on...), msgs...), err
	}
	notes, err := h.awaitDrone(ctx, d, "", msg.DeliveryCount > 1, now)
	if err != nil {
		return nil, err
	}
	wakes = append(wakes, notes...)
	retry := *env
	retry.Attempt++
	m := message(topology.QueueDeliveryRequests, env.RetryStep(fmt.Sprintf("retry-%d", retry.Attempt)), retry)
	m.NotBefore = now.Add(delay)
	h.waiting.add(d, retry.Attempt)
	// The first wait is news; the retries of a delivery booked days ahead
	// or waiting out a busy spell are not, and at a line a minute each they
	// would fill the logs.
	level := slog.LevelDebug
	if retry.Attempt == 1 {
		level = slog.LevelInfo
	}
	h.log.Log(ctx, level, "no drone available; retrying later", "attempt", retry.Attempt, "delay", delay.String())
	h.consoleChanged(ctx)
	return append(wakes, m), nil
}

// awaitDrone clears the planned times of a booked pickup that found no
// drone at its dispatch time, or a pause over its pickup (paused, the
// pause's reason), and tells the customer why (Delivery.AwaitDrone),
// naming a no-fly zone that leaves its leg no route (zoneInTheWay).
// A redelivered message that finds them cleared sends the notice again, in
// case the run that cleared them stopped before it (duplicates are
// dropped); the later retries do not, or the customer would hear it again
// each time the bus's duplicate window ran out.
func (h *Handlers) awaitDrone(ctx context.Context, d *domain.Delivery, paused string, redelivered bool, now time.Time) ([]ports.Message, error) {
	if d.AwaitsDrone() {
		if !redelivered {
			return nil, nil
		}
		var again []domain.Notification
		for _, n := range notificationsOfKind(d, domain.NotifyETAChanged) {
			if n.PickupETA == nil {
				again = append(again, n)
			}
		}
		return notifyMessages(d, again), nil
	}
	if d.Stage != domain.StageScheduled || d.DispatchAt == nil {
		return nil, nil
	}
	noRoute := ""
	if paused == "" {
		noRoute = h.zoneInTheWay(ctx, &d.Request, now)
	}
	var note domain.Notification
	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		var err error
		note, err = cur.AwaitDrone(paused, noRoute, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("clear the booked times: %w", err)
	}
	if note.ID == "" {
		return nil, nil
	}
	h.log.InfoContext(ctx, "no drone for the booked pickup at its dispatch time; its planned times cleared", "paused", paused, "noRoute", noRoute)
	return notifyMessages(got, []domain.Notification{note}), nil
}

// staleWake ends a message of an earlier generation of d. A wake of that
// generation hands its drone on to the waiting delivery that ranks first,
// d's current generation included (it may be waiting again), after taking
// off the board an entry of d left from the generation it was sent to; in
// that entry's area, which a reschedule may have left.
func (h *Handlers) staleWake(ctx context.Context, env *wire.Envelope, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	if !env.Wake {
		return nil, nil
	}
	_, area := h.waiting.removeIf(d.ID, func(w *waiter) bool { return w.generation == env.Generation }, now)
	if area == "" {
		area = domain.AreaOf(d.Request.PickupLocation)
	}
	return h.wakeWaiting(ctx, area, "", now)
}

// wokenInVain hands a wake on (handOn) when env is one and d no longer
// waits for a drone; any other message needs nothing more.
func (h *Handlers) wokenInVain(ctx context.Context, env *wire.Envelope, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	if !env.Wake {
		return nil, nil
	}
	return h.handOn(ctx, d, now)
}

// book makes d a booked pickup when its pickup time is later than a drone
// needs to get there: no drone is claimed, and a message to this step is
// queued for the dispatch time, pickupTime − the flight to the pickup of
// the drone that would be chosen now − Config.DispatchMargin (or −
// Config.DispatchLead when no drone could be chosen now). booked reports
// that d waits for its dispatch time; at that time dispatch runs as for
// any delivery, and when no drone is free then, d waits for one as any
// delivery does, its planned times cleared until a drone is assigned
// (awaitDrone).
func (h *Handlers) book(ctx context.Context, d *domain.Delivery, now time.Time) (msgs []ports.Message, booked bool, err error) {
	if d.DispatchAt != nil {
		if now.Before(*d.DispatchAt) {
			// Early: a redelivery of the message that booked it. Queue the
			// dispatch again in case that run stopped before it.
			return []ports.Message{dispatchMessage(d)}, true, nil
		}
		return nil, false, nil
	}
	if !h.bookedAhead(&d.Request, now) {
		return nil, false, nil
	}
	plan, err := h.choose(ctx, h.st(ctx), &d.Request, now, nil, nil)
	if err != nil && !domain.IsCode(err, domain.EUNPROCESSABLE) {
		return nil, false, err
	}
	dispatchAt, eta, ok, err := h.booking(ctx, &d.Request, plan, now)
	if err != nil || !ok {
		return nil, false, err
	}
	var notes []domain.Notification
	gen := d.Generation
	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Book(gen, dispatchAt, eta, now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("book the pickup: %w", err)
	}
	if got.DispatchAt == nil {
		return nil, false, nil // a drone was reserved meanwhile: finish that
	}
	h.log.InfoContext(ctx, "pickup booked", "dispatchAt", got.DispatchAt, "pickupTime", got.Request.PickupTime)
	return append(notifyMessages(got, notes), dispatchMessage(got)), true, nil
}

// bookedAhead says req's pickup is far enough ahead to be booked (book)
// rather than dispatched now: later than DispatchMargin from now.
func (h *Handlers) bookedAhead(req *domain.DeliveryRequest, now time.Time) bool {
	return req.PickupTime.After(now.Add(h.cfg.DispatchMargin))
}

// booking is how req, a pickup booked ahead, would be booked at now with
// plan, the drone dispatch would choose now (nil when none is free): its
// dispatch time and its planned times. ok is false when it is not to be
// booked (its dispatch time has come, or no drone of the fleet lifts it).
// Without a drone, the flight to the pickup is taken as DispatchLead, and
// the times are those of the fastest able drone at the pickup at
// pickupTime, flying the leg as routed then.
func (h *Handlers) booking(ctx context.Context, req *domain.DeliveryRequest, plan *domain.Plan, now time.Time) (dispatchAt time.Time, eta domain.ETA, ok bool, err error) {
	lead := h.cfg.DispatchLead
	if plan != nil {
		lead, eta = domain.LegDuration(plan.Route.Pickup.Km, plan.Drone.CruiseSpeedMps), plan.ETA
	} else {
		fleet, err := h.fleetSummary(ctx)
		if err != nil {
			return time.Time{}, domain.ETA{}, false, err
		}
		speed := fleet.MaxSpeedMps(&req.PackageInfo)
		if speed <= 0 {
			return time.Time{}, domain.ETA{}, false, nil
		}
		// RoutedETA from now: the pickup time, not a flight of 0 km after it.
		legKm := domain.DistanceKm(req.PickupLocation, req.DropoffLocation)
		if air, err := h.airspace(ctx); err == nil {
			if leg, err := domain.Leg(req, air, req.PickupTime); err == nil {
				legKm = leg.Km
			}
		}
		eta = domain.RoutedETA(now, 0, legKm, speed, req.PickupTime)
	}
	dispatchAt = req.PickupTime.Add(-lead - h.cfg.DispatchMargin)
	return dispatchAt, eta, now.Before(dispatchAt), nil
}

// dispatchMessage wakes dispatch for a booked pickup at its dispatch time.
func dispatchMessage(d *domain.Delivery) ports.Message {
	m := message(topology.QueueDeliveryRequests, "dispatch", wire.Envelope{Operation: wire.OpDelivery, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation})
	m.NotBefore = *d.DispatchAt
	return m
}

// releaseDrone frees the drone a delivery holds, if it still holds one. It
// is the compensation for a cancel, and a self-repair for any drone found
// attached to a delivery that has ended.
func (h *Handlers) releaseDrone(ctx context.Context, d *domain.Delivery) error {
	_, err := h.releaseDroneOf(ctx, d)
	return err
}

// releaseDroneOf is releaseDrone returning the drone as released, or nil
// when d held none.
func (h *Handlers) releaseDroneOf(ctx context.Context, d *domain.Delivery) (*domain.Drone, error) {
	if d.DroneID == "" {
		return nil, nil
	}
	now := h.clock.Now()
	var before *domain.Drone
	after, err := h.st(ctx).Fleet.Update(ctx, d.DroneID, func(dr *domain.Drone) error {
		before = dr.Clone()
		if d.EndedWithPackageAboard() {
			// Ended with the package aboard (the operator's abort): the
			// drone takes it to its home base and serves nothing until a
			// report places it there. Released at once, it was dispatched
			// with the package still aboard.
			if dr.CurrentDeliveryID != d.ID {
				return domain.ErrNoChange
			}
			_, _, err := dr.Recall("bringing back the package of delivery "+d.ID, d.ID, h.cfg.Tracking, now)
			return err
		}
		return dr.Release(d.ID, h.cfg.Tracking, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release drone %s: %w", d.DroneID, err)
	}
	if err := h.publishChargeCheck(ctx, before, after); err != nil {
		return nil, err
	}
	if before.CurrentDeliveryID == d.ID && after.CurrentDeliveryID != d.ID {
		h.log.InfoContext(ctx, "drone released", "droneId", d.DroneID, "stage", d.Stage)
	} else {
		// Released before (a replay), or it serves another delivery now.
		h.log.DebugContext(ctx, "drone not held by the delivery; nothing to release", "droneId", d.DroneID, "stage", d.Stage)
	}
	return after, nil
}

// releaseAndWake releases d's drone and wakes the waiting delivery that
// the freed drone lets dispatch serve first (wakeForFreed).
func (h *Handlers) releaseAndWake(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	dr, err := h.releaseDroneOf(ctx, d)
	if err != nil {
		return nil, err
	}
	return h.wakeForFreed(ctx, dr, "", now)
}

// afterCancel is what follows a delivery's cancel or abort (d is ended):
// it leaves the waiting board, its drone is released and wakes the next
// delivery waiting for one, and its package is marked with its end. Each
// part is a no-op once done.
func (h *Handlers) afterCancel(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	wakes, err := h.letGo(ctx, d, now)
	if err != nil {
		return nil, err
	}
	return wakes, h.markPackage(ctx, d, string(d.Stage))
}

// letGo takes an ended delivery off the waiting board and releases its
// drone, which wakes the next delivery waiting for one.
func (h *Handlers) letGo(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	// Off the board first, so that the freed drone's wake is not for d.
	wakes, err := h.leaveBoard(ctx, d, now)
	if err != nil {
		return nil, err
	}
	on, err := h.releaseAndWake(ctx, d, now)
	return append(wakes, on...), err
}

// resetAssignment forgets the previous generation's assignment before a
// rescheduled delivery is dispatched again, remembering its drone so that
// releaseOldDrone can give it back.
func (h *Handlers) resetAssignment(ctx context.Context, d *domain.Delivery) (*domain.Delivery, error) {
	gen, now := d.Generation, h.clock.Now()
	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.ResetAssignment(gen, now)
	})
	if err != nil {
		return nil, fmt.Errorf("reset assignment: %w", err)
	}
	return got, nil
}

// releaseOldDrone frees the drone an earlier generation of d claimed, unless
// the current generation has claimed it again (the drone records the
// generation it serves), so duplicate or concurrent runs cannot free a drone
// the new schedule holds. A drone it frees wakes the waiting delivery,
// other than d, that it lets dispatch serve first, as any freed drone does.
func (h *Handlers) releaseOldDrone(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	var before *domain.Drone
	after, err := h.st(ctx).Fleet.Update(ctx, d.PreviousDroneID, func(dr *domain.Drone) error {
		before = dr.Clone()
		return dr.ReleaseEarlier(d.ID, d.Generation, h.cfg.Tracking, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release drone %s of an earlier schedule: %w", d.PreviousDroneID, err)
	}
	if err := h.publishChargeCheck(ctx, before, after); err != nil {
		return nil, err
	}
	if before.CurrentDeliveryID != d.ID || after.CurrentDeliveryID == d.ID {
		return nil, nil // released by an earlier run
	}
	return h.wakeForFreed(ctx, after, d.ID, now)
}

func (h *Handlers) backoff(attempt int) time.Duration {
	d := h.cfg.RetryBase
	for i := 0; i < attempt && d < h.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, h.cfg.RetryMax)
}

// assign returns d with DroneAssignedAt set when a drone was claimed, or
// unchanged when none is available to it: none is free, or the fair-share
// rule gives the one it would take to a waiting delivery that outranks it,
// which wakes holds the message for, or keeps it for one woken for it
// (yieldTo). A reservation left by an interrupted attempt is finished
// first, even past the deadline, so a drone claimed by that attempt is
// never stranded. redelivered says the message was delivered before.
func (h *Handlers) assign(ctx context.Context, d *domain.Delivery, redelivered bool, now time.Time) (_ *domain.Delivery, wakes []ports.Message, _ error) {
	if d.DroneID != "" {
		if p := d.Preempted; p != nil {
			got, msgs, err := h.takeOver(ctx, d, d.DroneID, d.DroneArea, *p, now)
			if err == nil || !errors.Is(err, domain.ErrDroneUnavailable) {
				return got, msgs, err
			}
			wakes = msgs
		} else {
			got, err := h.claim(ctx, d, d.DroneID, d.DroneArea, now)
			if err == nil || !errors.Is(err, domain.ErrDroneUnavailable) {
				return got, nil, err
			}
		}
	}
	if !now.Before(d.Request.Deadline) {
		return d, wakes, nil
	}
	// A drone lost to a concurrent claim is left out and the rule applied
	// again to the others.
	lost := map[string]bool{}
	for _, id := range append([]string{d.AvoidDroneID}, d.ReassignedFrom...) {
		if id != "" {
			lost[id] = true // the operator moved the delivery off it (Delivery.Avoids)
		}
	}
	// Areas whose drones the account holds its share of, found this run:
	// their drones are left out (of at most maxClaimAttempts areas) for
	// another area's, as dispatch serves a pickup from the areas around it.
	capped := map[string]bool{}
	for tries := 0; tries < maxClaimAttempts; tries++ {
		plan, err := h.choose(ctx, h.st(ctx), &d.Request, now, lost, capped)
		if domain.IsCode(err, domain.EUNPROCESSABLE) {
			// No way from the pickup to the dropoff now (a zone in force):
			// wait as for a drone.
			h.log.InfoContext(ctx, "no route for the delivery now", "err", domain.ErrorMessage(err))
			return d, wakes, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if plan == nil && lost[d.AvoidDroneID] && d.AvoidsItsDroneOnlyWhileOut() {
			// No other drone serves it, and the one the operator took out
			// may have it again, once back in service (dispatch finds
			// only drones in service).
			delete(lost, d.AvoidDroneID)
			continue
		}
		if plan == nil {
			// An account at its share of the drones that could serve it
			// waits, even expedited: preemption is for a delivery that no
			// free drone can serve, and free drones are there, only not
			// for this account.
			if d.Request.Expedited && len(capped) == 0 && ctx.Err() == nil {
				// No free drone serves it by its deadline: the
				// preemption rule.
				got, msgs, err := h.preempt(ctx, d, now)
				return got, append(wakes, msgs...), err
			}
			return d, wakes, ctx.Err()
		}
		w, err := h.yieldTo(ctx, d, plan, redelivered, now)
		if errors.Is(err, errKept) {
			// Left to the delivery woken for it, as if lost to its claim
			// (woken again, when this run may be the one whose wake was
			// lost).
			h.log.DebugContext(ctx, "drone kept for the waiting delivery woken for it; trying the next", "droneId", plan.Drone.ID)
			if w != nil {
				wakes = append(wakes, h.wakeMessage(w, plan.Drone.ID, now))
			}
			lost[plan.Drone.ID] = true
			tries-- // not a try: each kept drone is passed over once
			continue
		}
		if errors.Is(err, errOverShare) {
			capped[domain.AreaOf(plan.Drone.HomeBase)] = true
			if len(capped) < maxClaimAttempts {
				tries-- // not a try: each capped area is passed over once
				continue
			}
			h.log.InfoContext(ctx, "account at its share of the drones around the pickup; waiting")
			return d, wakes, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if w != nil {
			h.log.InfoContext(ctx, "drone left to a waiting delivery that ranks first", "droneId", plan.Drone.ID, "for", w.DeliveryID)
			return d, append(wakes, h.wakeMessage(w, plan.Drone.ID, now)), nil
		}
		got, err := h.claim(ctx, d, plan.Drone.ID, domain.AreaOf(plan.Drone.HomeBase), now)
		if errors.Is(err, domain.ErrDroneUnavailable) {
			// Another dispatcher took it, or the index had not yet heard
			// that it was taken: a retry with the next candidate, no error.
			h.log.InfoContext(ctx, "drone lost to a concurrent claim; trying the next", "droneId", plan.Drone.ID)
			lost[plan.Drone.ID] = true
			continue
		}
		return got, wakes, err
	}
	return d, wakes, ctx.Err()
}

// maxClaimAttempts bounds the drones one run of dispatch tries to claim
// before it waits like a delivery that found none (a drone it passes over
// as kept for a wake, yieldTo, is not one it tried).
const maxClaimAttempts = 8

// claim reserves droneID on the delivery, claims the drone and records the
// assignment. It returns an error wrapping domain.ErrDroneUnavailable when
// the drone cannot be had, after dropping the reservation.
func (h *Handlers) claim(ctx context.Context, d *domain.Delivery, droneID, droneArea string, now time.Time) (*domain.Delivery, error) {
	reserved, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.Reserve(droneID, droneArea, now)
	})
	if err != nil {
		return nil, fmt.Errorf("reserve drone %s: %w", droneID, err)
	}
	if reserved.DroneAssignedAt != nil || reserved.Stage.Terminal() {
		return reserved, nil
	}
	if reserved.DroneID != droneID {
		// Another delivery of this message holds a reservation: finish that one.
		return h.claim(ctx, reserved, reserved.DroneID, reserved.DroneArea, now)
	}

	gen := reserved.Generation
	_, err = h.st(ctx).Fleet.Update(ctx, droneID, func(dr *domain.Drone) error {
		return dr.Claim(d.ID, gen, &reserved.Request, now)
	})
	if domain.IsCode(err, domain.ENOTFOUND) {
		err = fmt.Errorf("%w: drone %s is gone", domain.ErrDroneUnavailable, droneID)
	}
	if errors.Is(err, domain.ErrDroneUnavailable) {
		if _, uerr := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
			return cur.DropReservation(droneID, now)
		}); uerr != nil {
			return nil, fmt.Errorf("release reservation of drone %s: %w", droneID, uerr)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("claim drone %s: %w", droneID, err)
	}

	got, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.RecordAssignment(droneID, now)
	})
	if err != nil {
		return nil, fmt.Errorf("record assignment of drone %s: %w", droneID, err)
	}
	if got.Stage.Terminal() && got.DroneAssignedAt == nil {
		// Cancelled while the drone was being claimed: give it back.
		return got, h.releaseDrone(ctx, got)
	}
	return got, nil
}

// fail marks a delivery that is not yet Scheduled Failed with a reason,
// releases the drone it holds, if any, and tells the customer; the message
// is then done. Any other delivery is left alone.
func (h *Handlers) fail(ctx context.Context, id, reason string) ([]ports.Message, error) {
	now := h.clock.Now()
	var notes []domain.Notification
	d, err := h.st(ctx).Deliveries.Update(ctx, id, func(cur *domain.Delivery) error {
		notes = nil
		n, err := cur.Fail(reason, now)
		if err == nil {
			notes = append(notes, n)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark delivery failed: %w", err)
	}
	if d.Stage != domain.StageFailed {
		return nil, nil
	}
	if notes == nil {
		// A redelivery: send the failure notice again in case the first
		// attempt stopped before it; duplicate detection drops a repeat.
		notes = notificationsOfKind(d, domain.NotifyFailed)
	}
	// Repeated on every redelivery, like the notice; a no-op once done.
	if err := h.releaseDrone(ctx, d); err != nil {
		return nil, err
	}
	if err := h.markPackage(ctx, d, "Failed"); err != nil {
		return nil, err
	}
	h.log.WarnContext(ctx, "delivery failed", "reason", reason)
	h.announce(ctx, d)
	return notifyMessages(d, notes), nil
}

// notificationsOfKind returns a delivery's notifications of one kind.
func notificationsOfKind(d *domain.Delivery, kind string) []domain.Notification {
	var out []domain.Notification
	for _, n := range d.Notifications {
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}

// heldPastDeadline is the failure reason of a delivery whose deadline
// passed while a service pause (its reason) held it.
func heldPastDeadline(pauseReason string) string {
	return "the deadline passed while a service pause held the delivery: " + pauseReason
}

// noDroneReason is why a delivery that found no drone until its deadline
// fails: no drone, or the no-fly zone that keeps dispatch from sending one
// (zoneInTheWay), which the customer's notice then names.
func (h *Handlers) noDroneReason(ctx context.Context, req *domain.DeliveryRequest, now time.Time) string {
	const none = "no drone could be assigned before the deadline"
	if why := h.zoneInTheWay(ctx, req, now); why != "" {
		return none + ": no route: " + why
	}
	return none
}

// zoneInTheWay names a no-fly zone in force at the leg's time, or coming
// into force within soonWindow of it, that leaves req's leg no route (over
// its dropoff, say), which keeps dispatch from sending a drone now; "" when
// there is none, or the airspace could not be read.
func (h *Handlers) zoneInTheWay(ctx context.Context, req *domain.DeliveryRequest, now time.Time) string {
	air, err := h.airspace(ctx)
	if err != nil {
		return ""
	}
	at := domain.LegTime(req, now)
	why, err := domain.Unroutable(req, air, at)
	if err == nil && why == "" {
		why, err = domain.UnroutableSoon(req, air, at, soonWindow)
	}
	if err != nil {
		return ""
	}
	return why
}
