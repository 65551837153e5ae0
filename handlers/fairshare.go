package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// waitingBoard is the queue per area of the deliveries waiting for a drone
// (the fair-share rule, domain.Waiter), as this process knows them: every
// delivery its dispatch found no drone for, until one is assigned or it
// ends. Each waiting delivery's scheduled retries stay the durable record;
// the board only decides who goes first, so a process that restarts, or
// one that never saw a delivery wait, ranks fewer deliveries, never loses
// one.
type waitingBoard struct {
	mu     sync.Mutex
	byArea map[string]map[string]*waiter
	// areaOf is the area each delivery on the board waits in: a
	// reschedule may move its pickup to another area, whose entry the
	// next add replaces and remove finds.
	areaOf map[string]string
	// keptFor names the delivery each drone was last woken for (see
	// waiter.wokenFor, which says whether it still keeps it), so that a
	// run in another area than that delivery's finds it kept too.
	keptFor map[string]string
}

// waiter is one waiting delivery.
type waiter struct {
	domain.Waiter
	req           domain.DeliveryRequest
	generation    int
	correlationID string
	attempt       int
	// wakes counts the wakes sent to this attempt. While one is on its way
	// no other is sent to it (yieldTo, wakeWaiting: a second drone goes to
	// the next waiting delivery), and after maxWakesPerAttempt none is
	// until the delivery's next attempt: a delivery that keeps finding no
	// drone it may take would otherwise have the wakes of every retry of
	// the others handed to it while their drones stay idle. One whose wake
	// ran without taking a drone (found it taken by a delivery that
	// outranks it, say), or whose wake's drone is no longer kept for it
	// (earmarkFor), may be woken again for the next drone.
	wakes int
	// wokenFor is the drone the attempt's wake was sent for, kept for it
	// until the wake has run (or until wokenUntil, should it never run in
	// this process): a run of a delivery it outranks that finds the drone
	// free leaves it alone, and no other delivery is woken for it, whose
	// wake would race this one's. rewoken says a redelivered run has sent
	// the wake again (yieldTo), which it does once.
	wokenFor   string
	wokenUntil time.Time
	rewoken    bool
	// avoids are the drones the delivery will not take (Delivery.NeverGiven):
	// none is left, kept or woken for it.
	avoids []string
}

// earmarkFor bounds how long a drone is kept for the wake sent for it. A
// wake runs within moments, and a delivery that leaves the board (served,
// ended, held) hands a drone kept for it on (leaveBoard); one whose wake
// never runs here, or that leaves the board in another instance (another
// instance ran its wake, or its cancel), keeps the drone from this
// process's runs for this long, after which the next run that finds it
// free (a retry, at most RetryMax later, or the next wake) may take it.
// Meanwhile an expedited delivery it outranks finds no free drone there,
// and may take a drone that has not taken off, as the rule allows.
const earmarkFor = 30 * time.Second

// keeps reports whether w's wake, still on its way, keeps droneID.
func (w *waiter) keeps(droneID string, now time.Time) bool {
	return droneID != "" && w.wokenFor == droneID && now.Before(w.wokenUntil)
}

// maxWakesPerAttempt bounds the wakes one attempt of a delivery is sent.
const maxWakesPerAttempt = 3

// wakeable reports whether w may be sent a wake now: none of its wakes is
// on its way, and it has not had maxWakesPerAttempt this attempt.
func (w *waiter) wakeable(now time.Time) bool {
	return w.wakes < maxWakesPerAttempt && !w.keeps(w.wokenFor, now)
}

// add puts d on the board (or updates its entry) after its attempt-th
// retry was scheduled.
func (b *waitingBoard) add(d *domain.Delivery, attempt int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addLocked(d, attempt)
}

// addIfAbsent puts d on the board as add does, unless it is there
// already, whose entry (and count of wakes) it then leaves as it is.
func (b *waitingBoard) addIfAbsent(d *domain.Delivery, attempt int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.findLocked(d.ID); w == nil || w.generation != d.Generation {
		b.addLocked(d, attempt)
	}
}

// findLocked is d's entry, wherever it waits (nil when it is not on the
// board), with b.mu held.
func (b *waitingBoard) findLocked(id string) *waiter {
	return b.byArea[b.areaOf[id]][id]
}

// addLocked is add, with b.mu held.
func (b *waitingBoard) addLocked(d *domain.Delivery, attempt int) {
	if b.byArea == nil {
		b.byArea, b.areaOf, b.keptFor = map[string]map[string]*waiter{}, map[string]string{}, map[string]string{}
	}
	area := domain.AreaOf(d.Request.PickupLocation)
	if old, ok := b.areaOf[d.ID]; ok && old != area {
		delete(b.byArea[old], d.ID) // rescheduled into another area
	}
	b.areaOf[d.ID] = area
	q := b.byArea[area]
	if q == nil {
		q = map[string]*waiter{}
		b.byArea[area] = q
	}
	w := q[d.ID]
	if w == nil {
		w = &waiter{}
		q[d.ID] = w
	}
	w.Waiter = domain.Waiter{DeliveryID: d.ID, OwnerID: d.OwnerID, Expedited: d.Request.Expedited, CreatedAt: d.CreatedAt}
	// A new slice: copies of the entry (others) share the old one. A drone
	// the delivery may have back once in service, when no other serves it
	// (Delivery.AvoidsItsDroneOnlyWhileOut), is not one it avoids here.
	w.avoids = d.NeverGiven()
	if w.attempt != attempt || w.generation != d.Generation {
		w.wakes, w.wokenFor = 0, "" // a new attempt may be woken again
	}
	w.req, w.generation, w.correlationID, w.attempt = d.Request, d.Generation, d.CorrelationID, attempt
}

// remove takes d off the board, and returns the drone a wake on its way
// kept for it ("" when none).
func (b *waitingBoard) remove(d *domain.Delivery, now time.Time) (kept string) {
	kept, _ = b.removeIf(d.ID, func(*waiter) bool { return true }, now)
	return kept
}

// removeIf takes id off the board when its entry passes ok, and returns the
// drone a wake on its way kept for it ("" when none) and the area it
// waited in ("" when it stays).
func (b *waitingBoard) removeIf(id string, ok func(*waiter) bool, now time.Time) (kept, area string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.findLocked(id)
	if w == nil || !ok(w) {
		return "", ""
	}
	if w.keeps(w.wokenFor, now) {
		kept = w.wokenFor
	}
	area = b.areaOf[id]
	delete(b.byArea[area], id)
	delete(b.areaOf, id)
	return kept, area
}

// others returns copies of the entries of area but id's, dropping those
// past their deadline.
func (b *waitingBoard) others(area, id string, now time.Time) []waiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []waiter
	for k, w := range b.byArea[area] {
		if !now.Before(w.req.Deadline) {
			delete(b.byArea[area], k)
			delete(b.areaOf, k)
			continue
		}
		if k != id {
			out = append(out, *w)
		}
	}
	return out
}

// woken counts a wake of id, sent for droneID.
func (b *waitingBoard) woken(id, droneID string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.findLocked(id); w != nil {
		w.wakes++
		// A wake sent again for the drone kept (yieldTo) stays the one
		// wake sent again.
		w.rewoken = w.rewoken && w.wokenFor == droneID
		w.wokenFor, w.wokenUntil = droneID, now.Add(earmarkFor)
		b.keptFor[droneID] = id
	}
}

// wakeRan says a wake of d's attempt-th attempt has run without taking a
// drone: the drone it was sent for is no longer kept for it. A wake of
// another attempt (an earlier one's, or a pause's) leaves the current
// attempt's alone.
func (b *waitingBoard) wakeRan(d *domain.Delivery, attempt int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.findLocked(d.ID); w != nil && w.attempt == attempt {
		w.wokenFor = ""
	}
}

// keptElsewhere reports whether droneID is kept for the wake of a delivery,
// other than id, waiting in another area than area (a freed drone wakes
// the areas around its own when nobody in its own can take it).
func (b *waitingBoard) keptElsewhere(droneID, area, id string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	owner, ok := b.keptFor[droneID]
	if !ok || owner == id {
		return false
	}
	w := b.findLocked(owner)
	if w == nil || !w.keeps(droneID, now) {
		delete(b.keptFor, droneID)
		return false
	}
	return b.areaOf[owner] != area
}

// rewake marks w's wake as sent again by a redelivered run, and reports
// whether it was not yet.
func (b *waitingBoard) rewake(w *waiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.findLocked(w.DeliveryID); e != nil && !e.rewoken {
		e.rewoken = true
		return true
	}
	return false
}

// kept returns the drones that wakes on their way keep among ws.
func kept(ws []waiter, now time.Time) map[string]bool {
	out := map[string]bool{}
	for _, w := range ws {
		if w.keeps(w.wokenFor, now) {
			out[w.wokenFor] = true
		}
	}
	return out
}

// skipping is skip and the drones w avoids, for a choice made for w.
func (w *waiter) skipping(skip map[string]bool) map[string]bool {
	if len(w.avoids) == 0 {
		return skip
	}
	out := maps.Clone(skip)
	if out == nil {
		out = map[string]bool{}
	}
	for _, id := range w.avoids {
		out[id] = true
	}
	return out
}

// heldPage is the page size of the reads that count an account's drones,
// and heldScan bounds the deliveries read per stage: of an account with
// more that have not ended (its booked pickups, its deliveries waiting for
// a drone) only the drones held by the newest heldScan of each stage are
// counted, so it may count as holding fewer drones than it does.
const (
	heldPage = 200
	heldScan = 5000
)

// held counts the drones owner's deliveries hold in area: drones based
// there (domain.Delivery.HoldingArea), wherever the pickups they serve are.
// It reads through the owner index (the indexed reads of each stage of a
// delivery that has not ended: a claimed drone is held from before the
// stage says Scheduled).
// Every delivery of those stages is read, not only the newest page: booked
// pickups and waiting deliveries, which hold no drone, would otherwise
// crowd out the older ones that do, and the account would count as
// holding fewer drones than it does.
func (h *Handlers) held(ctx context.Context, owner, area string) (int, error) {
	n := 0
	for _, s := range activeStages {
		f := ports.DeliveryFilter{OwnerID: owner, Stage: s, Limit: heldPage}
		for read := 0; ; {
			page, err := h.store.Deliveries.PageByOwner(ctx, f)
			if err != nil {
				return 0, fmt.Errorf("count the drones of account %s: %w", owner, err)
			}
			for _, d := range page.Deliveries {
				if d.HoldsDrone() && d.HoldingArea() == area {
					n++
				}
			}
			read += len(page.Deliveries)
			if page.Next == nil || read >= heldScan {
				break
			}
			f.After = page.Next
		}
	}
	return n, nil
}

// errOverShare says the operator's cap keeps an account from another drone
// in the area for now.
var errOverShare = fmt.Errorf("the account holds its share of the area's drones")

// holdings counts, once per account, the drones based in one area that
// accounts hold, for ranking waiting deliveries by the fair-share rule and
// for the operator's cap.
type holdings struct {
	h      *Handlers
	area   string
	counts map[string]int
}

func (h *Handlers) holdingsIn(area string) *holdings {
	return &holdings{h: h, area: area, counts: map[string]int{}}
}

// of returns the drones owner's deliveries hold in the area.
func (c *holdings) of(ctx context.Context, owner string) (int, error) {
	if n, ok := c.counts[owner]; ok {
		return n, nil
	}
	n, err := c.h.held(ctx, owner, c.area)
	if err != nil {
		return 0, err
	}
	c.counts[owner] = n
	return n, nil
}

// rank fills in each waiter's holding and sorts ws, the one that gets a
// free drone first first.
func (c *holdings) rank(ctx context.Context, ws []waiter) error {
	for i := range ws {
		n, err := c.of(ctx, ws[i].OwnerID)
		if err != nil {
			return err
		}
		ws[i].Held = n
	}
	slices.SortFunc(ws, func(a, b waiter) int {
		if a.Outranks(b.Waiter) {
			return -1
		}
		return 1
	})
	return nil
}

// errKept says a wake on its way keeps the drone for a waiting delivery
// that outranks the one that found it free.
var errKept = errors.New("the drone is kept for the waiting delivery woken for it")

// yieldTo applies the fair-share rule before d claims plan's drone: it
// returns the waiting delivery that outranks d and could take that drone
// instead (nil when none does), errKept when a wake on its way keeps the
// drone for one that outranks d, or errOverShare when the operator's cap
// (Config.MaxAccountShare) keeps d's account from another drone of the
// drone's area. Holdings and the cap count drones where they are based,
// not where the pickups are: otherwise pickups placed just across an
// area's edge, in an area with no drones of its own (no cap there), would
// take that area's drones past the cap, and the count there would miss
// them. A
// redelivered run (redelivered) may be the one whose wake was lost with
// its outputs, so with errKept it returns, the first time for that wake,
// the delivery the drone is kept for, to be woken again.
func (h *Handlers) yieldTo(ctx context.Context, d *domain.Delivery, plan *domain.Plan, redelivered bool, now time.Time) (*waiter, error) {
	area := domain.AreaOf(d.Request.PickupLocation)
	if h.waiting.keptElsewhere(plan.Drone.ID, area, d.ID, now) {
		return nil, errKept
	}
	others := h.waiting.others(area, d.ID, now)
	if len(others) == 0 && h.cfg.MaxAccountShare <= 0 {
		return nil, nil
	}
	held := h.holdingsIn(domain.AreaOf(plan.Drone.HomeBase))
	mine, err := held.of(ctx, d.OwnerID)
	if err != nil {
		return nil, err
	}
	limit, err := h.shareLimit(ctx, held.area)
	if err != nil {
		return nil, err
	}
	if limit > 0 && mine >= limit {
		return nil, errOverShare
	}
	me := domain.Waiter{DeliveryID: d.ID, OwnerID: d.OwnerID, Expedited: d.Request.Expedited, CreatedAt: d.CreatedAt, Held: mine}
	if err := held.rank(ctx, others); err != nil {
		return nil, err
	}
	air, err := h.airspace(ctx)
	if err != nil {
		return nil, err
	}
	for i := range others {
		w := &others[i]
		if !w.Outranks(me) {
			break
		}
		if slices.Contains(w.avoids, plan.Drone.ID) {
			continue
		}
		can, err := h.mayTakeADrone(ctx, w, limit, now)
		if err != nil {
			return nil, err
		}
		if !can {
			continue
		}
		if w.keeps(plan.Drone.ID, now) {
			if redelivered && h.waiting.rewake(w) {
				return w, errKept
			}
			return nil, errKept
		}
		if !w.wakeable(now) {
			continue // a wake on its way, or its attempt's last (see waiter.wakes)
		}
		leg, err := air.Route(w.req.PickupLocation, w.req.DropoffLocation, domain.LegTime(&w.req, now))
		if err != nil {
			continue
		}
		dist := domain.DistanceKm(plan.Drone.Location, w.req.PickupLocation)
		if h.cfg.DispatchRadiusKm > 0 && dist > h.cfg.DispatchRadiusKm {
			continue // beyond dispatch's radius: its run would not take it
		}
		if _, why := domain.PlanFor(plan.Drone, dist, &w.req, air, leg, now); why == "" {
			return w, nil
		}
	}
	return nil, nil
}

// mayTakeADrone reports whether w, ranked (its Held filled in), may take a
// drone now: not when its account holds the operator's cap of the area's
// drones (limit, none when 0), nor while a service pause covers its
// pickup. A drone is neither left nor woken for it then: its wake would
// find nothing and hand on, one hop for each such delivery.
func (h *Handlers) mayTakeADrone(ctx context.Context, w *waiter, limit int, now time.Time) (bool, error) {
	if limit > 0 && w.Held >= limit {
		return false, nil
	}
	hold, err := h.pausedAt(ctx, w.req.PickupLocation, now)
	return hold == nil, err
}

// maxHandOnChecks bounds the waiting deliveries one hand-on looks for a
// drone for.
const maxHandOnChecks = 8

// leaveBoard takes d off the waiting board. A drone a wake on its way kept
// for d, and that d did not take, is free for the others again: the runs
// that left it to d went back to waiting, so the waiting delivery a free
// drone serves first is woken (wakeWaiting).
func (h *Handlers) leaveBoard(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	kept := h.waiting.remove(d, now)
	if kept == "" || (d.DroneAssignedAt != nil && d.DroneID == kept) {
		return nil, nil
	}
	// Around the drone, which may be in another area than d's pickup (a
	// neighbour's wake, or d rescheduled elsewhere).
	dr, err := h.st(ctx).Fleet.Find(ctx, kept)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find drone %s kept for delivery %s: %w", kept, d.ID, err)
	}
	return h.wakeForFreed(ctx, dr, d.ID, now)
}

// handOn passes a wake on when the delivery it woke, d, no longer waits
// for a drone (another run served it, or it ended; a wake of an earlier
// generation is staleWake's):
// the drone left to d would otherwise stay free until some waiting
// delivery's next retry. It wakes the waiting delivery of d's area that
// ranks first among those a free drone can serve now (at most
// maxHandOnChecks are tried), or none. The woken delivery claims through
// the conditional write like any run, so a repeated hand-on at worst
// wakes a delivery that then finds nothing; each hand-on takes d off the
// board, so a chain of them ends within the deliveries waiting there.
func (h *Handlers) handOn(ctx context.Context, d *domain.Delivery, now time.Time) ([]ports.Message, error) {
	h.waiting.remove(d, now)
	return h.wakeWaiting(ctx, domain.AreaOf(d.Request.PickupLocation), d.ID, now)
}

// wakeForFreed wakes a waiting delivery for drone dr, which has just become
// free (its delivery was cancelled or ended, its charge is done): without
// it the drone would stay idle until some waiting delivery's next retry,
// up to RetryMax later. It wakes the delivery of the drone's area that
// ranks first among those a free drone can serve now, as a hand-on does,
// or, when none there can be woken, that of the next of the areas around
// it (domain.AreasAround: dispatch serves a pickup from any drone within
// its radius); nothing when dr is not free or nobody waits there in this
// process. skip names a delivery not to wake (none when empty).
func (h *Handlers) wakeForFreed(ctx context.Context, dr *domain.Drone, skip string, now time.Time) ([]ports.Message, error) {
	if dr == nil || !dr.Dispatchable() {
		return nil, nil
	}
	for _, area := range domain.AreasAround(dr.Location) {
		if msgs, err := h.wakeWaiting(ctx, area, skip, now); err != nil || len(msgs) > 0 {
			return msgs, err
		}
	}
	return nil, nil
}

// wakeWaiting wakes the waiting delivery of area, other than skip, that
// ranks first among those that may take a drone now (mayTakeADrone) and
// that a free drone, not kept for another wake nor one it avoids, can
// serve (at most maxHandOnChecks are tried), or none.
func (h *Handlers) wakeWaiting(ctx context.Context, area, skip string, now time.Time) ([]ports.Message, error) {
	others := h.waiting.others(area, skip, now)
	if len(others) == 0 {
		return nil, nil
	}
	if err := h.holdingsIn(area).rank(ctx, others); err != nil {
		return nil, err
	}
	limit, err := h.shareLimit(ctx, area)
	if err != nil {
		return nil, err
	}
	// A drone a wake on its way keeps is not free for another.
	keep := kept(others, now)
	st := h.st(ctx)
	checked := 0
	for i := range others {
		if checked == maxHandOnChecks {
			break
		}
		w := &others[i]
		if !w.wakeable(now) {
			continue // a wake on its way, or its attempt's last (see waiter.wakes)
		}
		can, err := h.mayTakeADrone(ctx, w, limit, now)
		if err != nil {
			return nil, err
		}
		if !can {
			continue
		}
		checked++
		plan, err := h.choose(ctx, st, &w.req, now, w.skipping(keep), nil)
		if domain.IsCode(err, domain.EUNPROCESSABLE) {
			continue // no route for it now
		}
		if err != nil {
			return nil, err
		}
		if plan != nil {
			h.log.InfoContext(ctx, "woken delivery no longer waits; wake handed on", "droneId", plan.Drone.ID, "for", w.DeliveryID)
			return []ports.Message{h.wakeMessage(w, plan.Drone.ID, now)}, nil
		}
	}
	return nil, nil
}

// wakeMessage asks dispatch to run for w now, for droneID. Each wake has
// an id of its own: a count of wakes would be this process's, and another
// instance, or this one after a restart or after w left the board and came
// back, would count from one again and send an id the queue's duplicate
// detection drops.
func (h *Handlers) wakeMessage(w *waiter, droneID string, now time.Time) ports.Message {
	h.waiting.woken(w.DeliveryID, droneID, now)
	return message(topology.QueueDeliveryRequests, "wake-"+strconv.Itoa(w.attempt)+"-"+h.ids.NewID(),
		wire.Envelope{Operation: wire.OpDelivery, DeliveryID: w.DeliveryID, CorrelationID: w.correlationID,
			Attempt: w.attempt, Generation: w.generation, Wake: true})
}

// activeStages are the stages of a delivery that has not ended.
var activeStages = []domain.Stage{domain.StageCreated, domain.StageScheduled, domain.StageRescheduled,
	domain.StageHeadedToPickup, domain.StageHeadedToDropoff}

// tooManyActive answers 429 when the account has Config.MaxActiveDeliveries
// deliveries that have not ended, counted through the owner index.
func (h *Handlers) tooManyActive(ctx context.Context, owner string) (*functionapp.Response, error) {
	limit := h.cfg.MaxActiveDeliveries
	if limit <= 0 {
		return nil, nil
	}
	n := 0
	for _, s := range activeStages {
		page, err := h.store.Deliveries.PageByOwner(ctx, ports.DeliveryFilter{OwnerID: owner, Stage: s, Limit: limit})
		if err != nil {
			return nil, fmt.Errorf("count active deliveries: %w", err)
		}
		if n += len(page.Deliveries); n >= limit {
			resp := functionapp.Problem(http.StatusTooManyRequests, "",
				fmt.Sprintf("the account is at its limit of %d deliveries that have not ended; retry once some have", limit))
			resp.Header.Set("Retry-After", "60")
			return resp, nil
		}
	}
	return nil, nil
}
