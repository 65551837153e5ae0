package handlers

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Service pauses (docs/operating.md#service-pauses). While a pause covers
// a pickup (it has no area, or the pickup lies in its service area): ingest
// answers 503 with Retry-After and the reason, a quote says so, and
// dispatch holds the deliveries waiting there (ScheduleDrone): it claims
// no drone, marks them held with the reason (shown on the tracking page)
// and looks again when the pause ends or after RetryMax, whichever is
// sooner, without failing them for the wait. Drones already flying go on.

// pauseCacheTTL is how long the pauses read from the store are trusted:
// every request checks them, and a pause written through another process
// shows here within this time (at once through this one).
const pauseCacheTTL = time.Second

// MaxPauseRetryAfter bounds the Retry-After of a refusal by a pause that
// ends later: an operator may lift a pause before its end, and a client told
// to wait days (or, for a pause until 2999, centuries) would not come back
// for them; the detail still says when the pause ends.
const MaxPauseRetryAfter = time.Hour

// DefaultPauseRetryAfter is the Retry-After of a refusal by a pause with
// no end set.
const DefaultPauseRetryAfter = 5 * time.Minute

// pauseSet is the pauses as last read, each with the service area it
// covers.
type pauseSet struct {
	mu     sync.Mutex
	read   time.Time
	pauses []coveredPause
}

type coveredPause struct {
	pause *domain.Pause
	area  *airspace.Airspace // nil: everywhere
	gone  bool               // its service area was deleted: it covers nothing
}

func (h *Handlers) pausesStore() (ports.Pauses, error) {
	if h.store.Pauses == nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "this backend keeps no service pauses")
	}
	return h.store.Pauses, nil
}

// currentPauses returns the pauses, read again once pauseCacheTTL passed.
func (h *Handlers) currentPauses(ctx context.Context, now time.Time) ([]coveredPause, error) {
	if h.store.Pauses == nil {
		return nil, nil
	}
	c := &h.pauses
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.read.IsZero() && now.Sub(c.read) < pauseCacheTTL && !now.Before(c.read) {
		return c.pauses, nil
	}
	list, err := h.store.Pauses.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the service pauses: %w", err)
	}
	out := make([]coveredPause, 0, len(list))
	for _, p := range list {
		cp := coveredPause{pause: p}
		if p.AreaID != "" {
			var zones []*domain.Zone
			if h.store.Zones != nil {
				z, err := h.store.Zones.Find(ctx, domain.ZoneKey(domain.ServiceArea, p.AreaID))
				if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
					return nil, fmt.Errorf("read the service area of pause %s: %w", p.ID, err)
				}
				if z != nil {
					zones = append(zones, z)
				}
			}
			cp.area, cp.gone = airspace.New(zones), len(zones) == 0
		}
		out = append(out, cp)
	}
	c.pauses, c.read = out, now
	return out, nil
}

// forgetPauses makes the next check read the pauses again.
func (h *Handlers) forgetPauses() {
	h.pauses.mu.Lock()
	h.pauses.read = time.Time{}
	h.pauses.mu.Unlock()
}

// pausedAt returns the hold of a pause in force at now that covers loc,
// or nil.
func (h *Handlers) pausedAt(ctx context.Context, loc domain.Location, now time.Time) (*domain.Hold, error) {
	return h.pausedUntil(ctx, loc, now, now)
}

// pickupPaused returns the hold of a pause in force now that covers the
// request's pickup and is still in force at its pickup time: a pickup
// booked for after every pause there has ended is taken (and held at its
// dispatch time if a pause still is), as the no-fly zones judge a pickup
// by its time.
func (h *Handlers) pickupPaused(ctx context.Context, r *domain.DeliveryRequest, now time.Time) (*domain.Hold, error) {
	return h.pausedUntil(ctx, r.PickupLocation, now, domain.LegTime(r, now)) // its pickup time, or now once that has passed
}

// pausedUntil returns the hold of a pause read at now that covers loc and
// is in force at at, or nil.
func (h *Handlers) pausedUntil(ctx context.Context, loc domain.Location, now, at time.Time) (*domain.Hold, error) {
	ps, err := h.currentPauses(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, cp := range ps {
		p := cp.pause
		if !p.ActiveAt(at) || cp.gone {
			continue
		}
		if cp.area != nil && cp.area.Admit("pickupLocation", loc, now) != nil {
			continue // outside its service area
		}
		return &domain.Hold{PauseID: p.ID, Reason: p.Reason, Until: p.Until}, nil
	}
	return nil, nil
}

// pausedResponse is the 503 of a request a pause refuses: the reason, and
// Retry-After the pause's end, at most MaxPauseRetryAfter
// (DefaultPauseRetryAfter when it has none).
func pausedResponse(hold *domain.Hold, now time.Time) *functionapp.Response {
	seconds := int64(math.Ceil(DefaultPauseRetryAfter.Seconds()))
	if !hold.Until.IsZero() {
		// Whole seconds from the Unix times: a Duration cannot hold a
		// pause that ends centuries ahead, and would say 292 years.
		seconds = hold.Until.Unix() - now.Unix()
		if hold.Until.Nanosecond() > now.Nanosecond() {
			seconds++
		}
	}
	// The problem's detail starts with the field it names.
	resp := functionapp.Problem(http.StatusServiceUnavailable, "pickupLocation", "is where service is paused: "+pauseReason(hold))
	seconds = min(seconds, int64(MaxPauseRetryAfter/time.Second))
	resp.Header.Set("Retry-After", strconv.FormatInt(max(1, seconds), 10))
	return resp
}

// pausedDetail says why a pause refuses a request, and until when.
func pausedDetail(hold *domain.Hold) string { return "service is paused here: " + pauseReason(hold) }

// pauseReason is the pause's reason, and when it ends if it has an end.
func pauseReason(hold *domain.Hold) string {
	if hold.Until.IsZero() {
		return hold.Reason
	}
	return hold.Reason + "; it resumes at " + hold.Until.Format(time.RFC3339)
}

// PutPause serves PUT /api/pauses/{id} with the operator key: it pauses
// service everywhere, or in the service area areaId, with a reason, until
// it is deleted or until passes. 201 for a new pause, 200 for a replaced
// one.
func (h *Handlers) PutPause(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	ps, err := h.pausesStore()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	p, err := wire.ParsePause(req.Params["id"], req.Body, now)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if p.AreaID != "" {
		zs, err := h.zones()
		if err != nil {
			return h.errorResponse(ctx, err)
		}
		if _, err := zs.Find(ctx, domain.ZoneKey(domain.ServiceArea, p.AreaID)); err != nil {
			if domain.IsCode(err, domain.ENOTFOUND) {
				err = domain.Unprocessable("areaId", "names no service area (PUT /api/serviceareas/%s first)", p.AreaID)
			}
			return h.errorResponse(ctx, err)
		}
	}
	created := false
	got, err := h.putPause(ctx, ps, p, now, &created)
	h.forgetPauses()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "service paused", "pauseId", got.ID, "areaId", got.AreaID, "reason", got.Reason)
	if err := h.wakeHeldOtherwise(ctx, "pause-"+got.ID); err != nil {
		// What the pause covers is held at its next look all the same.
		h.log.WarnContext(ctx, "waiting deliveries the pause covers not woken; they are held at their next look", "pauseId", got.ID, "err", err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	resp := functionapp.JSON(status, wire.NewPauseView(got, now))
	resp.Header.Set("Location", "/api/pauses/"+got.ID)
	return resp
}

// putPause stores p, when roomForPause has room for it, with the other
// puts of this process waiting their turn (Handlers.pausing); created says
// whether it is new. Instances count on their own: with several, puts sent
// to different instances at once may pass MaxPauses by as many.
func (h *Handlers) putPause(ctx context.Context, ps ports.Pauses, p *domain.Pause, now time.Time, created *bool) (*domain.Pause, error) {
	done, err := h.pausing.Take(ctx, "pauses")
	if err != nil {
		return nil, domain.Unavailable(err, "the put was given up while it waited its turn; retry")
	}
	defer done()
	if err := h.roomForPause(ctx, ps, p.ID, now); err != nil {
		return nil, err
	}
	return ps.Upsert(ctx, p.ID, func(cur *domain.Pause) (*domain.Pause, error) {
		*created = cur == nil
		next := *p
		next.CreatedAt, next.UpdatedAt = now, now
		if cur != nil {
			next.CreatedAt = cur.CreatedAt
		}
		return &next, nil
	})
}

// roomForPause refuses a new pause id beyond domain.MaxPauses pauses in
// force; replacing a pause is always allowed. An expired pause covers
// nothing, so it does not count; rather than keep expired pauses for ever,
// a put removes them first (each on condition that nobody put it again
// since), which keeps the store at MaxPauses, as nothing else adds one.
// Should the removal fail, the put goes on: the count skips expired
// pauses whether they are gone or not, and the next put removes them.
func (h *Handlers) roomForPause(ctx context.Context, ps ports.Pauses, id string, now time.Time) error {
	all, err := ps.List(ctx)
	if err != nil {
		return err
	}
	inForce, replaces := 0, false
	for _, q := range all {
		replaces = replaces || q.ID == id
		if q.ActiveAt(now) {
			inForce++
		}
	}
	// Read again only when the listing shows something to remove.
	if inForce < len(all) {
		if n, err := ps.DeleteExpired(ctx, now); err != nil {
			h.log.WarnContext(ctx, "expired pauses not removed; the next put tries again", "err", err)
		} else if n > 0 {
			h.log.InfoContext(ctx, "expired pauses removed", "removed", n)
		}
	}
	if !replaces && inForce >= domain.MaxPauses {
		return domain.Unprocessable("id", "cannot be added: at most %d pauses in force are kept; delete one first", domain.MaxPauses)
	}
	return nil
}

// pauseNamed returns the pauses' store and the pause id of req's path,
// checked.
func (h *Handlers) pauseNamed(req *functionapp.Request) (ports.Pauses, string, error) {
	ps, err := h.pausesStore()
	if err != nil {
		return nil, "", err
	}
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		return nil, "", err
	}
	return ps, id, nil
}

// GetPause serves GET /api/pauses/{id} with the operator key: the pause
// and its state now, or 404.
func (h *Handlers) GetPause(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	ps, id, err := h.pauseNamed(req)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	p, err := ps.Find(ctx, id)
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "pause %s not found", id))
	}
	return functionapp.JSON(http.StatusOK, wire.NewPauseView(p, h.clock.Now()))
}

// pauseList is GET /api/pauses: every pause in one page, since at most
// domain.MaxPauses are in force and a put removes the expired ones.
type pauseList struct {
	Pauses []wire.PauseView `json:"pauses"`
}

// ListPauses serves GET /api/pauses with the operator key: every pause
// kept, in force or expired and not yet removed, ordered by id, each with
// its state now. It takes no parameters.
func (h *Handlers) ListPauses(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	if err := wire.CheckQuery(req.Query); err != nil {
		return h.errorResponse(ctx, err)
	}
	ps, err := h.pausesStore()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	all, err := ps.List(ctx)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	now := h.clock.Now()
	page := pauseList{Pauses: make([]wire.PauseView, 0, len(all))}
	for _, p := range all {
		page.Pauses = append(page.Pauses, wire.NewPauseView(p, now))
	}
	return functionapp.JSON(http.StatusOK, page)
}

// DeletePause serves DELETE /api/pauses/{id} (204): service resumes there.
// The deliveries it held, and no other pause holds, are sent to dispatch
// at once (resume); any left behind are dispatched at their next look,
// within RetryMax.
func (h *Handlers) DeletePause(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	ps, id, err := h.pauseNamed(req)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	err = ps.Delete(ctx, id)
	h.forgetPauses()
	if err != nil {
		return h.errorResponse(ctx, notFoundAs(err, "pause %s not found", id))
	}
	h.log.InfoContext(ctx, "service resumed", "pauseId", id)
	if err := h.wakeHeldOtherwise(ctx, "resume-"+id); err != nil {
		// The pause is gone; what it held is looked at again within
		// RetryMax all the same.
		h.log.WarnContext(ctx, "deliveries held by the pause not woken; they wait for their next look", "pauseId", id, "err", err)
	}
	return &functionapp.Response{Status: http.StatusNoContent, Header: http.Header{}}
}

// wakeBound bounds the waiting deliveries one change of the pauses reads;
// those beyond it wait for their next look.
const wakeBound = 1000

// wakeHeldOtherwise sends to dispatch, once every instance knows the
// change (2 × pauseCacheTTL), the waiting deliveries whose hold
// the pauses in force now change: held by a pause that ended, not held
// though a pause put now covers their pickup, or held for another reason
// than the one in force. Each gets a message of its own (a wake: the
// delivery's own retries go on beside it, and whichever runs second
// changes nothing), so that its status and tracking page say at once what
// holds it, and it is dispatched at once when nothing does. A booked
// pickup before its dispatch time, and a delivery whose drone is being
// claimed, are left to their own next step.
func (h *Handlers) wakeHeldOtherwise(ctx context.Context, tag string) error {
	if h.store.Waiting == nil {
		return nil
	}
	now := h.clock.Now()
	var msgs []ports.Message
	f := ports.WaitingFilter{Oldest: true, Limit: 200}
	for read := 0; read < wakeBound; {
		page, err := h.store.Waiting.PageWaiting(ctx, f)
		if err != nil {
			return err
		}
		for _, d := range page.Deliveries {
			if d.DroneID != "" || (d.DispatchAt != nil && now.Before(*d.DispatchAt)) {
				continue
			}
			hold, err := h.pausedAt(ctx, d.Request.PickupLocation, now)
			if err != nil {
				return err
			}
			want := ""
			if hold != nil {
				want = hold.Reason
			}
			if d.HeldReason == want {
				continue
			}
			// Named by the change and the hold it brings, so that two
			// changes at one instant are not taken for one message, in a
			// few characters whatever the length of the pause's id (a
			// Service Bus message id holds 128).
			m := message(topology.QueueDeliveryRequests, "hold-"+strconv.FormatInt(now.UnixNano(), 10)+"-"+shortTag(tag, want),
				wire.Envelope{Operation: wire.OpDelivery, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation, Wake: true})
			// Due once every instance has read the pauses again: one
			// still trusting what it read before the change would
			// dispatch into a pause, or hold what is no longer paused.
			m.NotBefore = now.Add(2 * pauseCacheTTL)
			msgs = append(msgs, m)
		}
		read += len(page.Deliveries)
		if page.Next == nil {
			break
		}
		f.After = page.Next
	}
	if len(msgs) == 0 {
		return nil
	}
	return h.publish(ctx, msgs...)
}

// shortTag is a short name of parts for a message id.
func shortTag(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// hold keeps d, which a pause covers, from dispatch: it is marked held with
// the pause's reason and looked at again when the pause ends or after
// RetryMax, whichever is sooner. The wait does not count against it.
func (h *Handlers) hold(ctx context.Context, d *domain.Delivery, env *wire.Envelope, hold *domain.Hold, redelivered bool, now time.Time) ([]ports.Message, error) {
	if _, err := h.st(ctx).Deliveries.Update(ctx, d.ID, func(cur *domain.Delivery) error {
		return cur.Hold(hold.Reason, now)
	}); err != nil {
		return nil, fmt.Errorf("hold the delivery: %w", err)
	}
	// A booked pickup held at its dispatch time shows no planned times.
	notes, err := h.awaitDrone(ctx, d, hold.Reason, redelivered, now)
	if err != nil {
		return nil, err
	}
	if env.Wake {
		// The delivery's own retries go on; a pause with an end gets a
		// wake of its own then, so that what it held is dispatched (and
		// its status shows no hold) when it ends, not at the next retry.
		if hold.Until.IsZero() || !hold.Until.Before(now.Add(h.cfg.RetryMax)) {
			return notes, nil
		}
		m := message(topology.QueueDeliveryRequests, "hold-end-"+strconv.FormatInt(hold.Until.UnixNano(), 10)+"-"+shortTag(hold.PauseID), *env)
		m.NotBefore = hold.Until.Add(2 * pauseCacheTTL)
		return append(notes, m), nil
	}
	next := now.Add(h.cfg.RetryMax)
	if !hold.Until.IsZero() && hold.Until.Before(next) {
		next = hold.Until
	}
	if d.Request.Deadline.Before(next) {
		next = d.Request.Deadline // failed then if still held (dispatch)
	}
	retry := *env
	retry.Attempt++
	m := message(topology.QueueDeliveryRequests, env.RetryStep(fmt.Sprintf("retry-%d", retry.Attempt)), retry)
	m.NotBefore = next
	h.log.InfoContext(ctx, "delivery held by a service pause", "pauseId", hold.PauseID, "until", next)
	return append(notes, m), nil
}
