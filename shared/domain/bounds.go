package domain

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Bounds on the numbers that feed an ETA and on what a delivery document
// keeps. A number outside them is refused where it enters (shared/wire, the
// telemetry step); the arithmetic here still guards itself, for documents
// stored before a bound existed.

// The cruise speeds a drone may be registered with. The slowest keeps the
// longest leg there is (half the Earth's circumference, about 20,000 km)
// to some 230 days, far inside what a time.Duration and RFC 3339 can carry;
// the fastest is well above any delivery drone's.
const (
	MinCruiseSpeedMps = 1
	MaxCruiseSpeedMps = 100
)

// MaxRangeKm bounds a drone's registered range: more than any mission the
// Earth allows.
const MaxRangeKm = 20000

// cruiseDuration is the time to fly km at speedMps, the speed taken as at
// least MinCruiseSpeedMps and the distance as finite and not negative, so
// that no stored value can overflow a time.Duration.
func cruiseDuration(km, speedMps float64) time.Duration {
	if math.IsNaN(speedMps) || speedMps < MinCruiseSpeedMps {
		speedMps = MinCruiseSpeedMps
	}
	if math.IsNaN(km) || km < 0 {
		km = 0
	}
	km = math.Min(km, math.Pi*6371.0088) // no two points on the Earth are further apart
	return time.Duration(math.Round(km * 1000 / speedMps * float64(time.Second)))
}

// The default window of telemetry timestamps the service takes, against its
// own clock (TrackingConfig): a drone's clock may run a little fast, and a
// drone out of reach may send what it buffered a while later; anything
// outside is a broken or hostile clock. A report from beyond the window
// would freeze the drone (only a newer report moves it) and date ETAs and
// completions by it.
const (
	TelemetryFutureSkew = 5 * time.Minute
	TelemetryMaxAge     = 24 * time.Hour
)

// CheckReportTime refuses (EUNPROCESSABLE, naming field) a report dated more
// than cfg.ClockSkew after now or more than cfg.MaxReportAge before it.
func (cfg TrackingConfig) CheckReportTime(field string, at, now time.Time) error {
	cfg = cfg.WithDefaults()
	if at.After(now.Add(cfg.ClockSkew)) {
		return Unprocessable(field, "must be no more than %s ahead of the service's clock (%s)", cfg.ClockSkew, now.UTC().Format(time.RFC3339))
	}
	if at.Before(now.Add(-cfg.MaxReportAge)) {
		return Unprocessable(field, "must be no more than %s before the service's clock (%s)", cfg.MaxReportAge, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// What one delivery document keeps, so that no document approaches Cosmos
// DB's item size limit (2 MB, learn.microsoft.com/azure/cosmos-db/concepts-limits
// "Per-item limits"), whatever its drone reports or its business sends.
// At the caps a document holds 240 trail points of some 80 bytes, 100
// events of at most a few hundred bytes and 50 notices of some 300 bytes:
// well under 100 KB (docs/SECURITY.md gives the measured figure).
const (
	// MaxTrailPoints bounds the trail: past it the older half is thinned
	// (every other point dropped, the first kept), so the page still draws
	// the whole path, the latest stretch in full. Every report rewrites the
	// document, and its cost (and Cosmos DB's request charge) grows with
	// the document's size: a short trail keeps a report's cost near that
	// of a new delivery's (BenchmarkTrackReportCost).
	MaxTrailPoints = 240
	// MaxHistoryEvents bounds the history: the first event, a marker of
	// the omitted ones, and the newest.
	MaxHistoryEvents = 100
	// MaxNotifications bounds the notices kept; ETA changes go first.
	MaxNotifications = 50
	// MaxCustomerNotices bounds the notices a delivery's subscribers are
	// sent by e-mail and SMS, which the operator pays for: a business that
	// reschedules one delivery over and over would otherwise have every
	// subscriber messaged each time. Later notices reach the business's
	// webhook and the tracking page, and the last one (delivered, failed,
	// cancelled) reaches the customers all the same (Delivery.ForCustomers).
	MaxCustomerNotices = 20
)

// EventTruncated is the Kind of the history event that stands for omitted
// events: its Stage is the stage the delivery was in after them, its At
// the time of the last of them, and Omitted their number.
const EventTruncated = "truncated"

// record appends e to the history; past MaxHistoryEvents it folds the
// oldest events after the first into one EventTruncated marker, which
// counts every event omitted so far.
func (d *Delivery) record(e Event) {
	d.History = append(d.History, e)
	if len(d.History) <= MaxHistoryEvents {
		return
	}
	// The marker, once there, is the second event; it and the event after
	// it, or the two events after the first, become the new marker.
	marker := Event{Kind: EventTruncated, Stage: d.History[0].Stage, Note: "earlier events omitted"}
	for _, gone := range d.History[1:3] {
		switch gone.Kind {
		case EventTruncated:
			marker.Omitted += gone.Omitted
			marker.Stage = gone.Stage
		case "":
			marker.Omitted++
			marker.Stage = gone.Stage
		default:
			marker.Omitted++
		}
		marker.At = gone.At
	}
	d.History[1] = marker
	d.History = append(d.History[:2], d.History[3:]...)
}

// EventCount is how many events the delivery ever recorded, the omitted
// ones included: it grows with every event, however long the history.
func (d *Delivery) EventCount() int {
	if len(d.History) > 1 && d.History[1].Kind == EventTruncated {
		return len(d.History) - 1 + d.History[1].Omitted
	}
	return len(d.History)
}

// keepNotification appends n; past MaxNotifications it drops the oldest ETA
// change, or, when there is none, the oldest notice. A dropped notice may
// still be on its way to the business or the customer: the steps that send
// one take it from the delivery, and treat one no longer there as
// superseded (Delivery.Notification).
func (d *Delivery) keepNotification(n Notification) {
	d.Notifications = append(d.Notifications, n)
	if len(d.Notifications) <= MaxNotifications {
		return
	}
	i := 0
	for j, m := range d.Notifications {
		if m.Kind == NotifyETAChanged {
			i = j
			break
		}
	}
	d.Notifications = append(d.Notifications[:i], d.Notifications[i+1:]...)
}

// Notification returns the delivery's notice id. A notice no longer kept
// (past MaxNotifications) is reported as dropped; an id the delivery never
// issued is neither found nor dropped.
func (d *Delivery) Notification(id string) (n *Notification, dropped bool) {
	for i := range d.Notifications {
		if d.Notifications[i].ID == id {
			return &d.Notifications[i], false
		}
	}
	seq, ok := d.noticeSeq(id)
	return nil, ok && seq >= 1 && seq <= d.NotificationCount
}

// noticeSeq is the sequence number in the id of one of d's notices
// ("<delivery id>:n<seq>", as issued in tracking.go).
func (d *Delivery) noticeSeq(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, d.ID+":n")
	seq, err := strconv.Atoi(rest)
	return seq, ok && err == nil
}

// thinTrail halves the resolution of the older half of a full trail,
// keeping its first point, so the whole path stays drawn however long the
// flight while the trail stays within MaxTrailPoints. It notes how far the
// thinned part reaches (ThinnedThrough).
func (d *Delivery) thinTrail() {
	if len(d.Trail) <= MaxTrailPoints {
		return
	}
	half := len(d.Trail) / 2
	through := d.Trail[half-1].At
	d.ThinnedThrough = &through
	kept := d.Trail[:1]
	for i := 2; i < half; i += 2 {
		kept = append(kept, d.Trail[i])
	}
	d.Trail = append(kept, d.Trail[half:]...)
}

// ForCustomers reports whether d's notice n is sent to its subscribers:
// the first MaxCustomerNotices of its notices, and whichever ends it.
func (d *Delivery) ForCustomers(n *Notification) bool {
	switch n.Kind {
	case NotifyDelivered, NotifyFailed, NotifyCancelled:
		return true
	}
	seq, ok := d.noticeSeq(n.ID)
	return !ok || seq <= MaxCustomerNotices
}
