package handlers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// DefaultFleetSummaryTTL is the default Config.FleetSummaryTTL.
const DefaultFleetSummaryTTL = 30 * time.Second

// fleetSummaryPage is how many drones one read of the rebuild lists.
const fleetSummaryPage = 1000

// fleetSummary keeps what the fleet can do (domain.FleetSummary) so that
// checking a request against it reads no drone, for a fleet that keeps no
// summary of its own (fleetSummariser). It is built by listing the
// fleet once, then grows with every drone this process registers, and is
// built again in the background once it is older than the TTL, which is
// how drones registered or retired through another process are learnt.
// A summary is never changed once published: a registration publishes a
// copy, so readers take it without a lock.
type fleetSummary struct {
	mu       sync.Mutex
	cur      *domain.FleetSummary
	built    time.Time
	building bool
	// dropped is when a retirement dropped the summary (noteDrone).
	dropped time.Time
	// first is the listing under way for the requests that find no
	// summary yet, which wait for it rather than each list the fleet.
	first *summaryListing
}

// summaryListing is one listing of the fleet for a first summary: done is
// closed once s or err is set. A retirement or a move of a home base while
// it runs supersedes it (noteDrone): it is cancelled, and those waiting
// for it wait for the next instead.
type summaryListing struct {
	done       chan struct{}
	s          *domain.FleetSummary
	err        error
	cancel     context.CancelFunc
	superseded bool // under fleetSummary.mu
}

// summaryListingTime bounds a listing of the fleet for a summary (the
// first, or one rebuilding a stale one), longer than a request may wait
// (functionapp.HandlerTimeout): a large fleet on Cosmos DB may take that
// long, and requests that give up before it ends find it built.
const summaryListingTime = time.Minute

// fleetSummariser is a fleet that keeps its summary up to date as its
// drones are written (the embedded one), so that it is never built by
// listing the fleet.
type fleetSummariser interface {
	Summary(ctx context.Context) (*domain.FleetSummary, error)
}

// fleetSummary returns the current summary: the fleet's own where it
// keeps one, otherwise built on first use and again once older than the
// TTL.
func (h *Handlers) fleetSummary(ctx context.Context) (*domain.FleetSummary, error) {
	if s, ok := h.store.Fleet.(fleetSummariser); ok {
		return s.Summary(ctx)
	}
	c := &h.summary
	c.mu.Lock()
	cur, built, building := c.cur, c.built, c.building
	stale := cur != nil && !building && h.clock.Now().Sub(built) > h.cfg.FleetSummaryTTL
	if stale {
		c.building = true
	}
	c.mu.Unlock()
	if cur == nil {
		return h.firstFleetSummary(ctx)
	}
	if stale {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), summaryListingTime)
			defer cancel()
			if _, err := h.rebuildFleetSummary(ctx); err != nil {
				h.log.Warn("fleet summary rebuild failed; keeping the previous one", "err", err)
			}
		}()
	}
	return cur, nil
}

// firstFleetSummary waits, within ctx, for the listing that builds the
// first summary, starting it when none is under way. The listing runs on a
// context of its own (summaryListingTime), so that a request that gives up
// waiting does not end it, and the next request finds its work done. One
// listing runs at a time: a request that comes while a superseded one
// ends waits for it to end, then for the next.
func (h *Handlers) firstFleetSummary(ctx context.Context) (*domain.FleetSummary, error) {
	c := &h.summary
	for {
		c.mu.Lock()
		if cur := c.cur; cur != nil {
			c.mu.Unlock()
			return cur, nil
		}
		l := c.first
		if l == nil {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), summaryListingTime)
			l = &summaryListing{done: make(chan struct{}), cancel: cancel}
			c.first = l
			go func() {
				defer cancel()
				l.s, l.err = h.rebuildFleetSummary(lctx)
				c.mu.Lock()
				c.first = nil
				c.mu.Unlock()
				close(l.done)
			}()
		}
		c.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("summarise the fleet: %w", ctx.Err())
		}
		c.mu.Lock()
		superseded := l.superseded
		c.mu.Unlock()
		if !superseded {
			return l.s, l.err
		}
	}
}

// rebuildFleetSummary lists the whole fleet into a new summary.
func (h *Handlers) rebuildFleetSummary(ctx context.Context) (_ *domain.FleetSummary, err error) {
	defer func() {
		if err != nil {
			h.summary.mu.Lock()
			h.summary.building = false
			h.summary.mu.Unlock()
		}
	}()
	defer h.recovered("the fleet summary's listing", &err)
	start := h.clock.Now()
	s := domain.NewFleetSummary()
	after := ""
	for {
		page, err := h.store.Fleet.List(ctx, "", after, fleetSummaryPage)
		if err != nil {
			return nil, fmt.Errorf("summarise the fleet: %w", err)
		}
		for _, d := range page {
			s.Add(d)
		}
		if len(page) < fleetSummaryPage {
			break
		}
		after = page[len(page)-1].ID
	}
	c := &h.summary
	c.mu.Lock()
	defer c.mu.Unlock()
	c.building = false
	if c.cur != nil && c.built.After(start) {
		return c.cur, nil
	}
	if !start.After(c.dropped) {
		return s, nil // to this caller only: the next use lists again
	}
	c.cur, c.built = s, start
	return s, nil
}

// noteDrone adds a registered drone, before it was put (nil for a new
// one), to the summary at once. A drone it retires, or whose home base it
// moves, has the summary listed again at its next use: the summary would
// count it still, or count it in the area it left.
func (h *Handlers) noteDrone(before, d *domain.Drone) {
	c := &h.summary
	c.mu.Lock()
	defer c.mu.Unlock()
	counted := before != nil && before.Status != domain.DroneRetired
	moved := counted && (before.HomeBase.Latitude != d.HomeBase.Latitude || before.HomeBase.Longitude != d.HomeBase.Longitude)
	if counted && d.Status == domain.DroneRetired || moved {
		// A listing under way may have read the drone before: what it
		// finds is not kept (rebuildFleetSummary), and it is cancelled; the
		// requests waiting for it wait for the next.
		c.cur, c.dropped = nil, h.clock.Now()
		if l := c.first; l != nil && !l.superseded {
			l.superseded = true
			l.cancel()
		}
		return
	}
	if c.cur == nil {
		return // the first use lists the fleet, this drone included
	}
	next := c.cur.Clone()
	if counted {
		next.AddCapability(d) // counted already: one drone, whatever it can do
	} else {
		next.Add(d)
	}
	c.cur = next
}

// airspace is the airspace in force now.
func (h *Handlers) airspace(ctx context.Context) (domain.Airspace, error) {
	if h.air == nil {
		return domain.OpenAirspace{}, nil
	}
	a, err := h.air.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the airspace: %w", err)
	}
	return a, nil
}

// feasible checks req (its times filled in) against the fleet and the
// airspace: nil, or the EUNPROCESSABLE error that says which field no
// drone could ever serve and why.
func (h *Handlers) feasible(ctx context.Context, req *domain.DeliveryRequest) error {
	_, err := h.feasibleIn(ctx, req)
	return err
}

// infeasible returns every reason no drone of the fleet could ever serve
// req (domain.Infeasible), or the error that kept it from checking.
func (h *Handlers) infeasible(ctx context.Context, req *domain.DeliveryRequest) ([]error, error) {
	fleet, err := h.fleetSummary(ctx)
	if err != nil {
		return nil, domain.Unavailable(err, "the fleet could not be read; retry")
	}
	air, err := h.airspace(ctx)
	if err != nil {
		return nil, domain.Unavailable(err, "the airspace could not be read; retry")
	}
	errs := domain.Infeasible(req, fleet, air, h.cfg.Feasibility, h.clock.Now())
	for _, e := range errs {
		if !domain.IsCode(e, domain.EUNPROCESSABLE) {
			return nil, e
		}
	}
	return errs, nil
}

// feasibleIn is feasible that also names the service area holding the
// pickup ("" for none), which analytics count the delivery under.
func (h *Handlers) feasibleIn(ctx context.Context, req *domain.DeliveryRequest) (area string, err error) {
	fleet, err := h.fleetSummary(ctx)
	if err != nil {
		return "", domain.Unavailable(err, "the fleet could not be read; retry")
	}
	air, err := h.airspace(ctx)
	if err != nil {
		return "", domain.Unavailable(err, "the airspace could not be read; retry")
	}
	if err := domain.Feasible(req, fleet, air, h.cfg.Feasibility, h.clock.Now()); err != nil {
		return "", err
	}
	if l, ok := air.(domain.AreaLocator); ok {
		area = l.AreaOf(req.PickupLocation, h.clock.Now())
	}
	return area, nil
}
