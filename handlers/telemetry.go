package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
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

// PostTelemetry accepts POST /api/drones/{id}/telemetry: one report or an
// array. Each report is queued for the tracking step and the 202 leaves only
// once they are all queued. A report dated outside the window around this
// clock (Tracking.CheckReportTime) refuses the whole POST with 422.
func (h *Handlers) PostTelemetry(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	id := req.Params["id"]
	now := h.clock.Now()
	reports, err := wire.ParseTelemetry(id, req.Body, func(field string, at time.Time) error {
		return h.cfg.Tracking.CheckReportTime(field, at, now)
	})
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	if _, err := h.store.Fleet.Find(ctx, id); err != nil {
		if domain.IsCode(err, domain.ENOTFOUND) {
			err = domain.Errorf(domain.ENOTFOUND, "drone %s not found", id)
		}
		return h.errorResponse(ctx, err)
	}
	msgs := make([]ports.Message, len(reports))
	for i, r := range reports {
		body, err := json.Marshal(r)
		if err != nil {
			// Parsing keeps times encodable; should that ever slip, an empty
			// message must not be queued behind a 202.
			return h.errorResponse(ctx, fmt.Errorf("encode telemetry of %s: %w", id, err))
		}
		msgs[i] = ports.Message{
			ID:            telemetryMessageID(id, r.Timestamp, body),
			Queue:         topology.QueueDroneTelemetry,
			Body:          body,
			CorrelationID: id,
			Operation:     "telemetry",
		}
	}
	if err := h.publish(ctx, msgs...); err != nil {
		return h.errorResponse(ctx, domain.Unavailable(err, "telemetry could not be queued; send it again"))
	}
	return functionapp.JSON(http.StatusAccepted, map[string]int{"accepted": len(msgs)})
}

// telemetryMessageID names a report by its drone, its time and a digest of
// what it says: the same report sent again is the same message, which the
// bus's duplicate detection drops, while another report dated the same (a
// drone whose clock started again, after its operator registered it anew,
// reusing the times of its earlier flight) is a message of its own, not
// dropped as a copy of the earlier one.
func telemetryMessageID(droneID string, at time.Time, body []byte) string {
	sum := fnv.New32a()
	sum.Write(body)
	return wire.MessageID(droneID, 0, "t:"+strconv.FormatInt(at.UnixNano(), 10)+":"+strconv.FormatUint(uint64(sum.Sum32()), 36))
}

// TrackDrone applies one telemetry report: it moves the drone's active
// delivery (trail, stage, position, ETAs) and then the drone itself. The
// delivery files reports by timestamp, so a duplicate changes nothing and a
// late one lands where it belongs; the drone keeps the newest position
// only. A crash between the two writes is finished by the redelivery.
func (h *Handlers) TrackDrone(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
	switch msg.Operation {
	case string(wire.OpChargeCheck):
		return h.checkCharge(ctx, msg)
	case string(wire.OpDroneAction):
		return nil, h.finishDroneAction(ctx, msg)
	}
	r, err := wire.ParseTelemetryMessage(msg.Body)
	if err != nil {
		return nil, err
	}
	ctx = logctx.With(ctx, "droneId", r.DroneID)
	if r.Timestamp.After(h.clock.Now().Add(h.cfg.Tracking.WithDefaults().ClockSkew)) {
		// Queued before the window was checked at the door: a report from
		// the future would freeze the drone and date its ETAs.
		h.log.WarnContext(ctx, "telemetry dated ahead of the clock; ignored", "timestamp", r.Timestamp)
		return nil, nil
	}
	// Reports for one drone arrive close together and each writes its
	// delivery and the drone: they write through at once, each document
	// under its turn (see the store adapters), rather than in a unit of work
	// whose commit would fail whenever a neighbouring report got in first.
	ctx = ports.WithStore(ctx, h.store)
	drone, err := h.store.Fleet.Find(ctx, r.DroneID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		return nil, &domain.Permanent{Err: fmt.Errorf("telemetry for unknown drone %s", r.DroneID)}
	}
	if err != nil {
		return nil, err
	}
	// A report older than the drone's last one still goes to the delivery:
	// it belongs in the trail and may be the one that reached the pickup.
	// One of an earlier flight, which the queue may bring after the drone
	// was claimed again, goes to the drone alone.
	flight := drone.FlightOf(*r)
	if flight == "" && drone.CurrentDeliveryID != "" {
		h.log.InfoContext(ctx, "report of an earlier flight; not filed into the current delivery",
			"deliveryId", drone.CurrentDeliveryID, "timestamp", r.Timestamp)
	}
	var out []ports.Message
	var d *domain.Delivery
	if flight != "" {
		ctx = logctx.With(ctx, "deliveryId", flight)
		var notes []domain.Notification
		d, err = h.store.Deliveries.Update(ctx, flight, func(cur *domain.Delivery) error {
			changed, ns := domain.Track(cur, drone, *r, h.cfg.Tracking)
			if !changed {
				return ports.ErrSkip
			}
			notes = ns
			return nil
		})
		if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
			return nil, fmt.Errorf("track delivery %s: %w", flight, err)
		}
		if d != nil {
			if notes == nil {
				notes = notificationsAt(d, r.Timestamp)
			}
			out = notifyMessages(d, notes)
			if d.Stage == domain.StageCompleted {
				if err := h.markPackage(ctx, d, "Delivered"); err != nil {
					return nil, err
				}
			}
		}
	}

	// The drone flies for the delivery once the delivery holds the report;
	// one the delivery refused (a reschedule came between the drone's read
	// and the delivery's write, and dispatch claimed the drone again for
	// the new schedule) moves the drone and leaves it booked, as its next
	// report, which the new schedule takes, flies it.
	serving := flight
	if d != nil && !d.Stage.Terminal() && !d.Filed(r.Timestamp) {
		serving = ""
	}
	now := h.clock.Now()
	freed := false
	after, err := h.store.Fleet.Update(ctx, r.DroneID, func(dr *domain.Drone) error {
		var err error
		freed, err = dr.ApplyReport(*r, serving, d == nil || d.Stage.Terminal(), h.cfg.Tracking, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update drone %s: %w", r.DroneID, err)
	}
	out = append(out, startedCharging(drone, after)...)
	if freed {
		h.log.InfoContext(ctx, "drone freed", "droneId", r.DroneID, "deliveryId", flight, "at", r.Timestamp)
	}
	if !drone.Dispatchable() {
		wakes, err := h.wakeForFreed(ctx, after, "", now)
		if err != nil {
			return nil, err
		}
		out = append(out, wakes...)
	}
	// After the drone's write, so the feed and the consoles show where the
	// report put it.
	h.announce(ctx, d)
	h.consoleChanged(ctx)
	return out, nil
}

// notificationsAt returns the notifications a report at t produced, to send
// them again when the report is redelivered.
func notificationsAt(d *domain.Delivery, t time.Time) []domain.Notification {
	var out []domain.Notification
	for _, n := range d.Notifications {
		if t.Equal(n.At) {
			out = append(out, n)
		}
	}
	return out
}

// markPackage records what became of a delivery's package. A package the
// service named after the delivery has a record only once the package
// step made one; one the client named was booked at acceptance.
func (h *Handlers) markPackage(ctx context.Context, d *domain.Delivery, status string) error {
	id := d.Request.PackageInfo.PackageID
	if d.PackageRecordedAt == nil && id == d.ID {
		return nil
	}
	now := h.clock.Now()
	_, err := h.st(ctx).Packages.Update(ctx, domain.PackageKey(d.OwnerID, id), func(p *domain.Package) error {
		return p.Mark(d.ID, status, now)
	})
	if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		return fmt.Errorf("mark package %s %s: %w", id, status, err)
	}
	return nil
}
