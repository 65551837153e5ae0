package handlers

import (
	"context"
	"fmt"
	"iter"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// waitingView is a waiting delivery as the operator's listing shows it:
// the delivery as GET /api/deliveries/{id} shows it, and why it waits.
type waitingView struct {
	deliveryView
	// WaitKind is a machine-readable domain.WaitKind; WaitReason says it
	// for a person.
	WaitKind   domain.WaitKind `json:"waitKind"`
	WaitReason string          `json:"waitReason"`
}

// waitingList is the body of GET /api/operator/deliveries.
type waitingList struct {
	Items      []waitingView `json:"items"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

// ListWaitingDeliveries serves GET /api/operator/deliveries?stage=waiting
// with the operator key: the deliveries of every account not yet flying
// and without a drone (domain.Delivery.Waiting), newest first or
// (order=oldest) oldest first, limit at a time, each with why it waits.
// The store reads a bounded number of candidates per page
// (ports.WaitingDeliveries), so a page may be short and still have a
// nextCursor; only its absence ends the listing.
func (h *Handlers) ListWaitingDeliveries(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	q, err := wire.ParseWaitingListing(req.Query)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	out, err := h.waitingPage(ctx, q)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, out)
}

// waitingPage reads one page of the waiting deliveries with their reasons.
func (h *Handlers) waitingPage(ctx context.Context, q *wire.WaitingListing) (*waitingList, error) {
	if h.store.Waiting == nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "this backend cannot list deliveries across accounts")
	}
	f := ports.WaitingFilter{Oldest: q.Oldest, Limit: q.Limit}
	if q.After != nil {
		f.After = &ports.DeliveryPosition{CreatedAt: q.After.CreatedAt, ID: q.After.ID}
	}
	page, err := h.store.Waiting.PageWaiting(ctx, f)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	seen := &pageLookups{shares: map[[2]string]bool{}}
	out := &waitingList{Items: make([]waitingView, 0, len(page.Deliveries))}
	for _, d := range page.Deliveries {
		kind, why, err := h.waitReason(ctx, d, now, seen)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, waitingView{deliveryView: viewOf(d), WaitKind: kind, WaitReason: why})
	}
	if page.Next != nil {
		out.NextCursor = wire.EncodeCursor(wire.Cursor{CreatedAt: page.Next.CreatedAt, ID: page.Next.ID})
	}
	return out, nil
}

// waitReason says why d waits: what d records (domain.WaitReason), else a
// pause declared since dispatch last ran, else an airspace that leaves it
// no flight now, else the operator's cap on an account's share of the
// area's drones, else no drone was available.
// seen keeps what a page's reasons share, so a page reads each once.
func (h *Handlers) waitReason(ctx context.Context, d *domain.Delivery, now time.Time, seen *pageLookups) (domain.WaitKind, string, error) {
	kind, why := d.WaitReason(now, h.cfg.RetryBase)
	if kind == domain.WaitHeld {
		// Held when dispatch last looked; the pause may have ended since.
		kind, why = domain.WaitNoDrone, domain.NoDroneReason
	}
	if kind != domain.WaitNoDrone && kind != domain.WaitDispatch {
		return kind, why, nil
	}
	hold, err := h.pausedAt(ctx, d.Request.PickupLocation, now)
	if err != nil {
		return "", "", err
	}
	if hold != nil {
		return domain.WaitHeld, "held: " + hold.Reason, nil
	}
	// One that is being dispatched again (a retry moments ago) is judged
	// by the airspace too: a zone put over its pickup since holds it
	// whether or not dispatch has run.
	if kind == domain.WaitNoDrone || kind == domain.WaitDispatch {
		if seen.air == nil {
			if seen.air, err = h.airspace(ctx); err != nil {
				return "", "", err
			}
		}
		why, err := domain.Unroutable(&d.Request, seen.air, domain.LegTime(&d.Request, now))
		if err != nil {
			return "", "", err
		}
		if why != "" {
			return domain.WaitNoRoute, "no route: " + why, nil
		}
	}
	if kind == domain.WaitNoDrone {
		if n := h.shortOfCharge(ctx, &d.Request, d.NeverGiven(), now); n > 0 {
			// Free drones are there, too low to fly it: the operator may
			// charge one (the end of a delivery charges one only under
			// BATTERY_LOW_PERCENT).
			why = fmt.Sprintf("%s: %d free drone(s) nearby could fly it charged, none with the charge now", domain.NoDroneReason, n)
		} else if ids := h.movedOffNearby(ctx, d, seen.air, now); len(ids) > 0 {
			// Free drones are there that could fly it, but the operator
			// moved it off them: it waits for another drone, or its
			// business cancels it and requests it again.
			why = fmt.Sprintf("%s: free drone(s) nearby could fly it but it was reassigned away from them (%s), and is never given one of those again",
				domain.NoDroneReason, strings.Join(ids, ", "))
		}
	}
	if kind == domain.WaitNoDrone && h.cfg.MaxAccountShare <= 0 {
		return h.unroutableSoon(d, now, seen, why)
	}
	if kind != domain.WaitNoDrone {
		return kind, why, nil
	}
	// Dispatch serves a pickup from the drones around it, and the cap
	// counts drones where they are based: the account is at its share when
	// it holds the cap of the drones of an area around the pickup.
	for _, area := range domain.AreasAround(d.Request.PickupLocation) {
		at, err := h.atShare(ctx, d.OwnerID, area, seen)
		if err != nil {
			return "", "", err
		}
		if at {
			return domain.WaitShare, "account at its share", nil
		}
	}
	return h.unroutableSoon(d, now, seen, why)
}

// atShare reports whether owner holds the operator's cap of the drones
// based in area, read once a page (seen).
func (h *Handlers) atShare(ctx context.Context, owner, area string, seen *pageLookups) (bool, error) {
	key := [2]string{owner, area}
	if at, ok := seen.shares[key]; ok {
		return at, nil
	}
	limit, err := h.shareLimit(ctx, area)
	if err != nil {
		return false, err
	}
	at := false
	if limit > 0 {
		held, err := h.held(ctx, owner, area)
		if err != nil {
			return false, err
		}
		at = held >= limit
	}
	seen.shares[key] = at
	return at, nil
}

// soonWindow is how far ahead the waiting list looks for a zone that comes
// into force while a drone sent now would still be flying the delivery.
const soonWindow = 15 * time.Minute

// unroutableSoon is the reason of a delivery that waits with no drone,
// noDrone (why), unless a zone that comes into force within soonWindow
// leaves its leg no route, which keeps dispatch from sending a drone now.
func (h *Handlers) unroutableSoon(d *domain.Delivery, now time.Time, seen *pageLookups, why string) (domain.WaitKind, string, error) {
	soon, err := domain.UnroutableSoon(&d.Request, seen.air, domain.LegTime(&d.Request, now), soonWindow)
	if err != nil {
		return "", "", err
	}
	if soon != "" {
		return domain.WaitNoRoute, "no route: " + soon + " (in force within 15 minutes)", nil
	}
	return domain.WaitNoDrone, why, nil
}

// chargeCandidates bounds the free drones near a waiting delivery that
// the waiting list's reasons look at (freeNearby).
const chargeCandidates = 20

// shortOfCharge counts the free drones within the dispatch radius of req's
// pickup (of the nearest chargeCandidates) that could fly it once charged,
// in time for its deadline if charged from now, but not on the battery
// they have (domain.ShortOfCharge), leaving out those dispatch never gives
// it (never: domain.Delivery.NeverGiven).
func (h *Handlers) shortOfCharge(ctx context.Context, req *domain.DeliveryRequest, never []string, now time.Time) int {
	n := 0
	for dr := range h.freeNearby(ctx, req.PickupLocation) {
		if !slices.Contains(never, dr.ID) && domain.ShortOfCharge(dr, req, h.cfg.Tracking, now) {
			n++
		}
	}
	return n
}

// freeNearby yields the free drones within the dispatch radius of loc,
// nearest first, chargeCandidates at most: those the waiting list's
// reasons look at.
func (h *Handlers) freeNearby(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return func(yield func(*domain.Drone, float64) bool) {
		seen := 0
		for dr, km := range h.store.Fleet.NearestAvailable(ctx, loc) {
			if km > h.cfg.DispatchRadiusKm || seen == chargeCandidates || !yield(dr, km) {
				return
			}
			seen++
		}
	}
}

// movedOffNearby lists the free drones within the dispatch radius of d's
// pickup (of the nearest chargeCandidates) that could fly it now but that
// the operator reassigned it away from (Delivery.ReassignedFrom), which
// dispatch never gives it again; none when dispatch, leaving out the
// drones it never gives d, would find it a drone now (its next try may
// take that one).
func (h *Handlers) movedOffNearby(ctx context.Context, d *domain.Delivery, air domain.Airspace, now time.Time) []string {
	if len(d.ReassignedFrom) == 0 || air == nil {
		return nil
	}
	never := map[string]bool{}
	for _, id := range d.NeverGiven() {
		never[id] = true
	}
	if plan, err := h.choose(ctx, h.st(ctx), &d.Request, now, never, nil); err != nil || plan != nil {
		return nil
	}
	req := &d.Request
	leg, err := air.Route(req.PickupLocation, req.DropoffLocation, domain.LegTime(req, now))
	if err != nil {
		return nil
	}
	var ids []string
	for dr, km := range h.freeNearby(ctx, req.PickupLocation) {
		if !slices.Contains(d.ReassignedFrom, dr.ID) {
			continue
		}
		if _, why := domain.PlanFor(dr, km, req, air, leg, now); why == "" {
			ids = append(ids, dr.ID)
		}
	}
	return ids
}

// pageLookups is what the reasons of one page of waiting deliveries read
// once: the airspace in force, and per account and area whether the
// account is at its share.
type pageLookups struct {
	air    domain.Airspace // nil until first needed
	shares map[[2]string]bool
}

// shareLimit is how many of the drones based in area one account may hold
// at once under Config.MaxAccountShare; 0 means no limit.
func (h *Handlers) shareLimit(ctx context.Context, area string) (int, error) {
	if h.cfg.MaxAccountShare <= 0 {
		return 0, nil
	}
	fleet, err := h.fleetSummary(ctx)
	if err != nil {
		return 0, err
	}
	return int(math.Ceil(h.cfg.MaxAccountShare * float64(fleet.DronesIn(area)))), nil
}
