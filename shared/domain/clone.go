package domain

import "slices"

// Clone returns a deep copy of the delivery: it shares no pointer and no
// slice's array with the original, so a store may hand out clones of the
// copy it keeps (a unit of work) for callers to change, instead of decoding
// the document again for each change.
func (d *Delivery) Clone() *Delivery {
	c := *d
	c.Request = d.Request.clone()
	c.DroneAssignedAt = clonePtr(d.DroneAssignedAt)
	c.PackageRecordedAt = clonePtr(d.PackageRecordedAt)
	c.PickupETA = clonePtr(d.PickupETA)
	c.DeliveryETA = clonePtr(d.DeliveryETA)
	if d.LastKnownLocation != nil {
		l := d.LastKnownLocation.clone()
		c.LastKnownLocation = &l
	}
	c.DispatchAt = clonePtr(d.DispatchAt)
	if d.PlannedRoute != nil {
		c.PlannedRoute = &PlannedRoute{Pickup: d.PlannedRoute.Pickup.clone(), Dropoff: d.PlannedRoute.Dropoff.clone()}
	}
	c.ScheduledAt = clonePtr(d.ScheduledAt)
	c.Preempted = clonePtr(d.Preempted)
	c.PickedUpAt = clonePtr(d.PickedUpAt)
	c.CompletedAt = clonePtr(d.CompletedAt)
	c.CancelledAt = clonePtr(d.CancelledAt)
	c.LastTelemetryAt = clonePtr(d.LastTelemetryAt)
	c.ThinnedThrough = clonePtr(d.ThinnedThrough)
	c.Trail = slices.Clone(d.Trail)
	c.History = cloneEach(d.History, Event.clone)
	c.Notifications = cloneEach(d.Notifications, Notification.clone)
	c.NotifiedDeliveryETA = clonePtr(d.NotifiedDeliveryETA)
	if d.Confirmation != nil {
		cf := *d.Confirmation
		cf.GeoCoordinates = d.Confirmation.GeoCoordinates.clone()
		c.Confirmation = &cf
	}
	c.ReassignedFrom = slices.Clone(d.ReassignedFrom)
	c.Subscriptions = slices.Clone(d.Subscriptions)
	c.EndedSubscriptions = cloneEach(d.EndedSubscriptions, func(e EndedSubscription) EndedSubscription {
		e.Suppress = slices.Clone(e.Suppress)
		return e
	})
	return &c
}

func (r DeliveryRequest) clone() DeliveryRequest {
	r.PickupLocation = r.PickupLocation.clone()
	r.DropoffLocation = r.DropoffLocation.clone()
	return r
}

func (l Location) clone() Location {
	l.Altitude = clonePtr(l.Altitude)
	return l
}

func (r Route) clone() Route {
	r.Points = cloneEach(r.Points, Location.clone)
	return r
}

func (e Event) clone() Event {
	if e.Location != nil {
		l := e.Location.clone()
		e.Location = &l
	}
	return e
}

func (n Notification) clone() Notification {
	n.PickupETA = clonePtr(n.PickupETA)
	n.DeliveryETA = clonePtr(n.DeliveryETA)
	return n
}

// cloneEach copies s with each element copied by clone; nil stays nil.
func cloneEach[T any](s []T, clone func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = clone(v)
	}
	return out
}
