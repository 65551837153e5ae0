package domain

import (
	"math"
	"time"
)

// Analytics are kept as running totals, per account, per service area and
// fleet-wide, for each month and each day of it. A delivery belongs to the
// month and day (UTC) it was accepted in, as the monthly summary has always
// counted it, and adds to its buckets twice: once when it is accepted and
// once when it ends (Completed, Cancelled or Failed). Each of those is a
// Contribution, keyed by the delivery and the stage, so that a store can
// add it exactly once however often the write that made it is replayed.

// Figures are the counters of one bucket. They are integers, so that totals
// do not depend on the order the contributions were added in: re-derived
// totals equal maintained ones exactly.
type Figures struct {
	Count      int64 `json:"count"`      // deliveries accepted
	Completed  int64 `json:"completed"`  // of which completed
	Cancelled  int64 `json:"cancelled"`  // of which cancelled
	Failed     int64 `json:"failed"`     // of which failed
	OnTime     int64 `json:"onTime"`     // completed by their deadline
	DurationMs int64 `json:"durationMs"` // accepted → delivered, completed only
	TraveledM  int64 `json:"traveledM"`  // metres flown, of the deliveries that ended
	AssignedMs int64 `json:"assignedMs"` // assignment → end, of the deliveries that ended
}

// Add adds g to f.
func (f *Figures) Add(g Figures) {
	f.Count += g.Count
	f.Completed += g.Completed
	f.Cancelled += g.Cancelled
	f.Failed += g.Failed
	f.OnTime += g.OnTime
	f.DurationMs += g.DurationMs
	f.TraveledM += g.TraveledM
	f.AssignedMs += g.AssignedMs
}

// Contribution is what one transition of a delivery adds to each of its
// buckets: the acceptance (StageCreated) or the end (a terminal stage).
type Contribution struct {
	Stage   Stage
	Figures Figures
}

// UnzonedArea is the area bucket of deliveries whose pickup lay in no
// service area when they were accepted.
const UnzonedArea = "unzoned"

// The scopes of analytics buckets.
const (
	ScopeAccount = "account"
	ScopeArea    = "area"
	ScopeFleet   = "fleet"
)

// BucketKey names a scope's bucket: "fleet", "account:<id>", "area:<id>".
func BucketKey(scope, id string) string {
	if scope == ScopeFleet {
		return ScopeFleet
	}
	return scope + ":" + id
}

// MonthKey names a month as analytics store it: "2026-12".
func MonthKey(t time.Time) string { return t.UTC().Format("2006-01") }

// Buckets returns the bucket keys d adds to: its account's, its pickup
// area's and the fleet's.
func (d *Delivery) Buckets() []string {
	area := d.AreaID
	if area == "" {
		area = UnzonedArea
	}
	return []string{BucketKey(ScopeAccount, d.OwnerID), BucketKey(ScopeArea, area), ScopeFleet}
}

// AnalyticsDay is the month and day of the month d's figures count in.
func (d *Delivery) AnalyticsDay() (month string, day int) {
	t := d.CreatedAt.UTC()
	return MonthKey(t), t.Day()
}

// Contributions returns what d has added to analytics so far: its
// acceptance and, once it has ended, its end. They depend only on d's
// state, and a delivery never leaves a terminal stage, so replaying a
// write yields the same contributions.
func (d *Delivery) Contributions() []Contribution {
	out := []Contribution{{Stage: StageCreated, Figures: Figures{Count: 1}}}
	if !d.Stage.Terminal() {
		return out
	}
	end := d.EndedAt()
	f := Figures{TraveledM: int64(math.Round(d.TraveledKm * 1000)), AssignedMs: d.AssignedBeforeMs}
	if d.DroneAssignedAt != nil && end.After(*d.DroneAssignedAt) {
		f.AssignedMs += end.Sub(*d.DroneAssignedAt).Milliseconds()
	}
	switch d.Stage {
	case StageCompleted:
		f.Completed = 1
		if d.CompletedAt != nil {
			f.DurationMs = d.CompletedAt.Sub(d.CreatedAt).Milliseconds()
			if !d.CompletedAt.After(d.Request.Deadline) {
				f.OnTime = 1
			}
		}
	case StageCancelled:
		f.Cancelled = 1
	case StageFailed:
		f.Failed = 1
	}
	return append(out, Contribution{Stage: d.Stage, Figures: f})
}

// EndedAt is when a delivery in a terminal stage ended: its completion or
// cancellation time, or the time of the last change of stage; the zero
// time for a delivery still running.
func (d *Delivery) EndedAt() time.Time {
	switch {
	case !d.Stage.Terminal():
		return time.Time{}
	case d.Stage == StageCompleted && d.CompletedAt != nil:
		return *d.CompletedAt
	case d.Stage == StageCancelled && d.CancelledAt != nil:
		return *d.CancelledAt
	}
	for i := len(d.History) - 1; i >= 0; i-- {
		if e := d.History[i]; e.Kind == "" && e.Stage == d.Stage {
			return e.At
		}
	}
	return d.UpdatedAt
}

// MonthFigures is one bucket's month: its totals and its days.
type MonthFigures struct {
	Bucket string    `json:"bucket"`
	Month  string    `json:"month"` // "2026-12"
	Total  Figures   `json:"total"`
	Days   []Figures `json:"days"` // one per day of the month, the 1st first
}

// NewMonthFigures returns an empty month of bucket; month is its first
// instant.
func NewMonthFigures(bucket string, month time.Time) *MonthFigures {
	days := time.Date(month.Year(), month.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return &MonthFigures{Bucket: bucket, Month: MonthKey(month), Days: make([]Figures, days)}
}

// AddDay adds f to day (1-based) of m and to its total; a day outside the
// month is ignored.
func (m *MonthFigures) AddDay(day int, f Figures) {
	if day < 1 || day > len(m.Days) {
		return
	}
	m.Days[day-1].Add(f)
	m.Total.Add(f)
}

// Derive computes the buckets of one month from its deliveries, as the
// maintained ones should hold them: the repair path and the check of the
// maintained figures.
func Derive(month time.Time, ds []*Delivery) map[string]*MonthFigures {
	out := map[string]*MonthFigures{}
	key := MonthKey(month)
	for _, d := range ds {
		m, day := d.AnalyticsDay()
		if m != key {
			continue
		}
		for _, b := range d.Buckets() {
			mf := out[b]
			if mf == nil {
				mf = NewMonthFigures(b, month)
				out[b] = mf
			}
			for _, c := range d.Contributions() {
				mf.AddDay(day, c.Figures)
			}
		}
	}
	return out
}
