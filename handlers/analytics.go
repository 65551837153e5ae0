package handlers

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// maxSummarised bounds the deliveries one summary reads.
const maxSummarised = 100000

// month parses the ownerId, year and month query parameters shared by the
// summaries; a month outside 1..12 is a 400, as in the reference API. The
// owner is the caller's account: ownerId may repeat it and is refused (403)
// when it names another.
func month(ctx context.Context, q map[string][]string, now time.Time) (owner string, from, to time.Time, err error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if err = wire.CheckQuery(q, "ownerId", "year", "month"); err != nil {
		return "", from, to, err
	}
	if owner, err = callerAccount(ctx); err != nil {
		return "", from, to, err
	}
	if given := get("ownerId"); given != "" {
		if err := domain.ValidText("ownerId", given, domain.MaxIDLength); err != nil {
			return "", from, to, err
		}
		if given != owner {
			return "", from, to, domain.Forbidden("ownerId", "must be the id of the account whose API key is used, or be left out")
		}
	}
	year, mon := now.Year(), int(now.Month())
	if s := get("year"); s != "" {
		if year, err = strconv.Atoi(s); err != nil || year < 2000 || year > 9999 || strconv.Itoa(year) != s {
			return "", from, to, domain.Invalid("year", "must be a year from 2000 to 9999")
		}
	}
	if s := get("month"); s != "" {
		if mon, err = strconv.Atoi(s); err != nil || mon < 1 || mon > 12 || (strconv.Itoa(mon) != s && "0"+strconv.Itoa(mon) != s) {
			return "", from, to, domain.Invalid("month", "must be from 1 to 12")
		}
	}
	from = time.Date(year, time.Month(mon), 1, 0, 0, 0, 0, time.UTC)
	return owner, from, from.AddDate(0, 1, 0), nil
}

// DeliverySummary is the body of GET /api/deliveries/summary.
type DeliverySummary struct {
	OwnerID                string  `json:"ownerId"`
	Year                   int     `json:"year"`
	Month                  int     `json:"month"`
	Count                  int     `json:"count"`
	Completed              int     `json:"completed"`
	Cancelled              int     `json:"cancelled"`
	Failed                 int     `json:"failed"`
	InProgress             int     `json:"inProgress"`
	OnTimeRate             float64 `json:"onTimeRate"`             // completed by the deadline / completed
	AverageDurationMinutes float64 `json:"averageDurationMinutes"` // accepted → delivered, completed only
}

// GetDeliveriesSummary serves GET /api/deliveries/summary?ownerId&year&month,
// computed from the deliveries' recorded history.
func (h *Handlers) GetDeliveriesSummary(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	owner, from, to, err := month(ctx, req.Query, h.clock.Now())
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ds, err := h.store.Deliveries.ListByOwner(ctx, owner, from, to, maxSummarised)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, Summarise(owner, from, ds))
}

// Summarise computes a month's summary from its deliveries.
func Summarise(owner string, from time.Time, ds []*domain.Delivery) DeliverySummary {
	s := DeliverySummary{OwnerID: owner, Year: from.Year(), Month: int(from.Month()), Count: len(ds)}
	onTime := 0
	var total time.Duration
	for _, d := range ds {
		switch d.Stage {
		case domain.StageCompleted:
			s.Completed++
			if d.CompletedAt != nil {
				total += d.CompletedAt.Sub(d.CreatedAt)
				if !d.CompletedAt.After(d.Request.Deadline) {
					onTime++
				}
			}
		case domain.StageCancelled:
			s.Cancelled++
		case domain.StageFailed:
			s.Failed++
		default:
			s.InProgress++
		}
	}
	if s.Completed > 0 {
		s.OnTimeRate = round(float64(onTime)/float64(s.Completed), 4)
		s.AverageDurationMinutes = round(total.Minutes()/float64(s.Completed), 2)
	}
	return s
}

// Utilization is the body of GET /api/dronedeliveries/utilization.
type Utilization struct {
	OwnerID       string  `json:"ownerId"`
	Year          int     `json:"year"`
	Month         int     `json:"month"`
	TraveledMiles float64 `json:"traveledMiles"`
	AssignedHours float64 `json:"assignedHours"`
}

// GetUtilization serves GET /api/dronedeliveries/utilization?ownerId&year&month:
// the miles drones flew for the owner's deliveries (from telemetry) and the
// hours drones were assigned to them (assignment to completion, cancellation
// or failure; still running deliveries count up to now).
func (h *Handlers) GetUtilization(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	now := h.clock.Now()
	owner, from, to, err := month(ctx, req.Query, now)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	ds, err := h.store.Deliveries.ListByOwner(ctx, owner, from, to, maxSummarised)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	return functionapp.JSON(http.StatusOK, Utilize(owner, from, ds, now))
}

// Utilize computes a month's drone utilisation from its deliveries.
func Utilize(owner string, from time.Time, ds []*domain.Delivery, now time.Time) Utilization {
	u := Utilization{OwnerID: owner, Year: from.Year(), Month: int(from.Month())}
	var km float64
	var assigned time.Duration
	for _, d := range ds {
		km += d.TraveledKm
		if d.DroneAssignedAt == nil {
			continue
		}
		end := now
		for _, t := range []*time.Time{d.CompletedAt, d.CancelledAt} {
			if t != nil {
				end = *t
			}
		}
		if d.Stage == domain.StageFailed && len(d.History) > 0 {
			end = d.History[len(d.History)-1].At
		}
		if end.After(*d.DroneAssignedAt) {
			assigned += end.Sub(*d.DroneAssignedAt)
		}
	}
	u.TraveledMiles = round(km*0.621371, 3)
	u.AssignedHours = round(assigned.Hours(), 3)
	return u
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
