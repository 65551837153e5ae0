package handlers

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// period is what a summary request asks for: one bucket's month.
type period struct {
	scope, id string // domain.ScopeAccount, ScopeArea or ScopeFleet; the account or area id
	from      time.Time
}

func (p period) bucket() string { return domain.BucketKey(p.scope, p.id) }

// FiguresOf says whose month a figures body (DeliverySummary, Utilization)
// counts.
type FiguresOf struct {
	OwnerID string `json:"ownerId,omitempty"` // the account, for an account's figures
	AreaID  string `json:"areaId,omitempty"`  // the service area, for an area's figures
	Scope   string `json:"scope"`             // account, area or fleet
	Year    int    `json:"year"`
	Month   int    `json:"month"`
}

func (p period) figuresOf() FiguresOf {
	o := FiguresOf{Scope: p.scope, Year: p.from.Year(), Month: int(p.from.Month())}
	switch p.scope {
	case domain.ScopeAccount:
		o.OwnerID = p.id
	case domain.ScopeArea:
		o.AreaID = p.id
	}
	return o
}

// day is the date of the i-th day of p's month, counted from 0.
func (p period) day(i int) string { return p.from.AddDate(0, 0, i).Format(time.DateOnly) }

// month parses the ownerId, areaId, year and month query parameters shared
// by the summaries; a month outside 1..12 is a 400, as in the reference
// API. A business's figures are its own account's: ownerId may repeat it
// and is refused (403) when it names another, as is areaId. The operator
// key reads the whole fleet's, one area's (areaId, "unzoned" for pickups
// outside every service area) or one account's (ownerId).
func month(ctx context.Context, q map[string][]string, now time.Time) (p period, err error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if err = wire.CheckQuery(q, "ownerId", "areaId", "year", "month"); err != nil {
		return p, err
	}
	owner, area := get("ownerId"), get("areaId")
	// Account and area ids are ids like any other (domain.ValidID), so
	// "..", a slash or a space is refused rather than looked up.
	if owner != "" {
		if err := domain.ValidID("ownerId", owner); err != nil {
			return p, err
		}
	}
	if area != "" {
		if err := domain.ValidID("areaId", area); err != nil {
			return p, err
		}
	}
	switch {
	case callerIsOperator(ctx) && owner != "" && area != "":
		return p, domain.Invalid("areaId", "cannot be given with ownerId: ask for one account or one area")
	case callerIsOperator(ctx) && owner != "":
		p.scope, p.id = domain.ScopeAccount, owner
	case callerIsOperator(ctx) && area != "":
		p.scope, p.id = domain.ScopeArea, area
	case callerIsOperator(ctx):
		p.scope = domain.ScopeFleet
	default:
		acct, err := callerAccount(ctx)
		if err != nil {
			return p, err
		}
		if owner != "" && owner != acct {
			return p, domain.Forbidden("ownerId", "must be the id of the account whose API key is used, or be left out")
		}
		if area != "" {
			return p, domain.Forbidden("areaId", "is for the operator key; a business's figures are its own account's")
		}
		p.scope, p.id = domain.ScopeAccount, acct
	}
	year, mon := now.Year(), int(now.Month())
	if s := get("year"); s != "" {
		if year, err = strconv.Atoi(s); err != nil || year < 2000 || year > 9999 || strconv.Itoa(year) != s {
			return p, domain.Invalid("year", "must be a year from 2000 to 9999")
		}
	}
	if s := get("month"); s != "" {
		if mon, err = strconv.Atoi(s); err != nil || mon < 1 || mon > 12 || (s != strconv.Itoa(mon) && s != fmt.Sprintf("%02d", mon)) {
			return p, domain.Invalid("month", "must be from 1 to 12")
		}
	}
	p.from = time.Date(year, time.Month(mon), 1, 0, 0, 0, 0, time.UTC)
	return p, nil
}

// figures reads the month a request asks for from the maintained
// analytics (one point read) and answers it with the body view makes of it.
func figures[B any](ctx context.Context, h *Handlers, req *functionapp.Request, view func(period, *domain.MonthFigures) B) *functionapp.Response {
	p, err := month(ctx, req.Query, h.clock.Now())
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if h.store.Analytics == nil {
		return h.errorResponse(ctx, domain.Errorf(domain.EINTERNAL, "this store keeps no analytics"))
	}
	m, err := h.store.Analytics.Month(ctx, p.bucket(), p.from)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if m.Total.Count == 0 {
		if err := h.scopeKnown(ctx, p); err != nil {
			return h.errorResponse(ctx, err)
		}
	}
	return functionapp.JSON(http.StatusOK, view(p, m))
}

// scopeKnown answers 404, naming the parameter, when the operator asked
// for the figures of an account or a service area that does not exist, so
// that a misspelt id is not taken for an idle one. It is asked only of a
// month with no deliveries: an area deleted since keeps its figures.
func (h *Handlers) scopeKnown(ctx context.Context, p period) error {
	switch {
	case !callerIsOperator(ctx):
		return nil // a business's own account
	case p.scope == domain.ScopeAccount:
		_, err := h.store.Accounts.Find(ctx, p.id)
		return namedNotFound(err, "ownerId", "no account %s", p.id)
	case p.scope == domain.ScopeArea && p.id != domain.UnzonedArea:
		zs, err := h.zones()
		if err != nil {
			return err
		}
		_, err = zs.Find(ctx, domain.ZoneKey(domain.ServiceArea, p.id))
		return namedNotFound(err, "areaId", "no service area %s (%s is the area of pickups outside every service area)", p.id, domain.UnzonedArea)
	}
	return nil
}

// DeliverySummary is the body of GET /api/deliveries/summary.
type DeliverySummary struct {
	FiguresOf
	Count                  int64   `json:"count"`
	Completed              int64   `json:"completed"`
	Cancelled              int64   `json:"cancelled"`
	Failed                 int64   `json:"failed"`
	InProgress             int64   `json:"inProgress"`
	OnTime                 int64   `json:"onTime"`                 // completed by the deadline
	OnTimeRate             float64 `json:"onTimeRate"`             // completed by the deadline / completed
	AverageDurationMinutes float64 `json:"averageDurationMinutes"` // accepted → delivered, completed only
	TotalDurationMinutes   float64 `json:"totalDurationMinutes"`
	// Days are the month's days, the 1st first, each with the
	// deliveries accepted that day.
	Days []SummaryDay `json:"days"`
}

// SummaryDay is one day of a DeliverySummary.
type SummaryDay struct {
	Date      string `json:"date"` // 2026-12-04
	Count     int64  `json:"count"`
	Completed int64  `json:"completed"`
	Cancelled int64  `json:"cancelled"`
	Failed    int64  `json:"failed"`
	OnTime    int64  `json:"onTime"`
}

// GetDeliveriesSummary serves GET /api/deliveries/summary?ownerId&areaId&year&month
// from the maintained analytics, in constant time.
func (h *Handlers) GetDeliveriesSummary(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return figures(ctx, h, req, summarise)
}

// summarise turns a bucket's month into the summary body.
func summarise(p period, m *domain.MonthFigures) DeliverySummary {
	t := m.Total
	s := DeliverySummary{FiguresOf: p.figuresOf(),
		Count: t.Count, Completed: t.Completed, Cancelled: t.Cancelled, Failed: t.Failed, OnTime: t.OnTime,
		InProgress:           max(0, t.Count-t.Completed-t.Cancelled-t.Failed),
		TotalDurationMinutes: round(float64(t.DurationMs)/60000, 2),
		Days:                 make([]SummaryDay, len(m.Days))}
	if t.Completed > 0 {
		s.OnTimeRate = round(float64(t.OnTime)/float64(t.Completed), 4)
		s.AverageDurationMinutes = round(float64(t.DurationMs)/60000/float64(t.Completed), 2)
	}
	for i, f := range m.Days {
		s.Days[i] = SummaryDay{Date: p.day(i),
			Count: f.Count, Completed: f.Completed, Cancelled: f.Cancelled, Failed: f.Failed, OnTime: f.OnTime}
	}
	return s
}

// Utilization is the body of GET /api/dronedeliveries/utilization.
type Utilization struct {
	FiguresOf
	TraveledMiles float64 `json:"traveledMiles"`
	TraveledKm    float64 `json:"traveledKm"`
	AssignedHours float64 `json:"assignedHours"`
	// Ended counts the deliveries whose figures are in: those that
	// completed, were cancelled or failed.
	Ended int64            `json:"ended"`
	Days  []UtilizationDay `json:"days"`
}

// UtilizationDay is one day of a Utilization: the deliveries accepted that
// day that have ended.
type UtilizationDay struct {
	Date          string  `json:"date"`
	TraveledMiles float64 `json:"traveledMiles"`
	AssignedHours float64 `json:"assignedHours"`
}

// GetUtilization serves GET /api/dronedeliveries/utilization?ownerId&areaId&year&month:
// the miles drones flew for the month's deliveries (from telemetry) and the
// hours drones were assigned to them (assignment to completion,
// cancellation or failure), counted when each delivery ends, from the
// maintained analytics in constant time.
func (h *Handlers) GetUtilization(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	return figures(ctx, h, req, utilize)
}

// utilize turns a bucket's month into the utilisation body.
func utilize(p period, m *domain.MonthFigures) Utilization {
	t := m.Total
	u := Utilization{FiguresOf: p.figuresOf(),
		TraveledMiles: miles(t.TraveledM), TraveledKm: round(float64(t.TraveledM)/1000, 3),
		AssignedHours: hours(t.AssignedMs), Ended: t.Completed + t.Cancelled + t.Failed,
		Days: make([]UtilizationDay, len(m.Days))}
	for i, f := range m.Days {
		u.Days[i] = UtilizationDay{Date: p.day(i),
			TraveledMiles: miles(f.TraveledM), AssignedHours: hours(f.AssignedMs)}
	}
	return u
}

func miles(m int64) float64  { return round(float64(m)/1000*0.621371, 3) }
func hours(ms int64) float64 { return round(float64(ms)/3.6e6, 3) }

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
