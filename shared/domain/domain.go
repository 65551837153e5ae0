// Package domain holds the delivery service's types and rules: deliveries,
// drones, packages, their validation, the dispatch rule and the ETA. It does
// no I/O; the ports package names what the handlers need from the outside.
package domain

import (
	"time"

	"github.com/fabrikam/dronedelivery/shared/geo"
)

// Location is a point on the Earth; altitude is optional and in metres.
type Location struct {
	Latitude  float64  `json:"latitude"`
	Longitude float64  `json:"longitude"`
	Altitude  *float64 `json:"altitude,omitempty"`
}

// Point converts the location for distance computations.
func (l Location) Point() geo.Point { return geo.Point{Lat: l.Latitude, Lon: l.Longitude} }

// DistanceKm is the great-circle distance between two locations.
func DistanceKm(a, b Location) float64 { return geo.DistanceKm(a.Point(), b.Point()) }

// Stage is where a delivery is in its life.
type Stage string

// The stages of a delivery, in the order a normal delivery passes them.
const (
	StageCreated         Stage = "Created"
	StageScheduled       Stage = "Scheduled"
	StageHeadedToPickup  Stage = "HeadedToPickup"
	StageHeadedToDropoff Stage = "HeadedToDropoff"
	StageCompleted       Stage = "Completed"
	StageCancelled       Stage = "Cancelled"
	StageRescheduled     Stage = "Rescheduled"
	StageFailed          Stage = "Failed"
)

// Stages lists every stage: those of a normal delivery in order, then the
// others.
var Stages = []Stage{StageCreated, StageScheduled, StageHeadedToPickup, StageHeadedToDropoff, StageCompleted,
	StageCancelled, StageRescheduled, StageFailed}

// Valid reports whether s is one of Stages.
func (s Stage) Valid() bool {
	for _, v := range Stages {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether no further step may change the delivery.
func (s Stage) Terminal() bool {
	return s == StageCompleted || s == StageCancelled || s == StageFailed
}

// NoDroneComing reports whether the stage ended without the delivery:
// cancelled or failed. No drone is coming then, and a time beside the stage
// would read as one that is, so views and notices show no ETAs.
func (s Stage) NoDroneComing() bool { return s == StageCancelled || s == StageFailed }

// PackageSize is the size class of a package; sizes are ordered.
type PackageSize string

// The package sizes, smallest first.
const (
	SizeSmall  PackageSize = "Small"
	SizeMedium PackageSize = "Medium"
	SizeLarge  PackageSize = "Large"
)

// Rank orders sizes (Small < Medium < Large); 0 means not a size.
func (s PackageSize) Rank() int {
	switch s {
	case SizeSmall:
		return 1
	case SizeMedium:
		return 2
	case SizeLarge:
		return 3
	}
	return 0
}

// ConfirmationType is how the recipient confirms a delivery.
type ConfirmationType string

// The confirmation types the reference API accepts.
const (
	ConfirmationNone        ConfirmationType = "None"
	ConfirmationFingerPrint ConfirmationType = "FingerPrint"
	ConfirmationPicture     ConfirmationType = "Picture"
	ConfirmationVoice       ConfirmationType = "Voice"
)

// Describe names the confirmation type as a sentence uses it: "confirmed
// by a fingerprint".
func (c ConfirmationType) Describe() string {
	switch c {
	case ConfirmationFingerPrint:
		return "a fingerprint"
	case ConfirmationPicture:
		return "a picture"
	case ConfirmationVoice:
		return "a voice recording"
	}
	return "the recipient"
}

// PackageInfo describes the package a delivery carries.
type PackageInfo struct {
	PackageID string      `json:"packageId"`
	Size      PackageSize `json:"size"`
	Weight    float64     `json:"weight"`
	Tag       string      `json:"tag,omitempty"`
}

// DeliveryRequest is a validated, normalised request for a delivery.
type DeliveryRequest struct {
	OwnerID              string           `json:"ownerId"`
	PickupLocation       Location         `json:"pickupLocation"`
	DropoffLocation      Location         `json:"dropOffLocation"`
	PickupTime           time.Time        `json:"pickupTime"`
	Deadline             time.Time        `json:"deadline"`
	Expedited            bool             `json:"expedited"`
	ConfirmationRequired ConfirmationType `json:"confirmationRequired"`
	PackageInfo          PackageInfo      `json:"packageInfo"`
}

// Delivery is the state of one delivery request as the chain advances it.
type Delivery struct {
	ID            string          `json:"id"`
	TrackingID    string          `json:"trackingId"`
	OwnerID       string          `json:"ownerId"`
	CorrelationID string          `json:"correlationId"`
	Request       DeliveryRequest `json:"request"`
	// AreaID is the service area that held the pickup when the delivery
	// was accepted ("" for none); analytics count the delivery there.
	AreaID      string `json:"areaId,omitempty"`
	RequestHash string `json:"requestHash"`
	// DeadlineBy says who set the request's deadline: DeadlineByService
	// (the client named none) or DeadlineByClient; "" on a delivery
	// stored before it was kept (Reschedule then goes by the deadline's
	// value).
	DeadlineBy string `json:"deadlineBy,omitempty"`
	Stage      Stage  `json:"stage"`
	DroneID    string `json:"droneId,omitempty"`
	// DroneArea is the area (AreaOf) of the home base of the drone DroneID
	// names: the operator's cap on an account's share of an area's drones
	// counts the drone there, wherever the pickup is (HoldingArea).
	DroneArea       string     `json:"droneArea,omitempty"`
	DroneAssignedAt *time.Time `json:"droneAssignedAt,omitempty"`
	// AssignedBeforeMs is how long the drones of earlier generations held
	// the delivery (ResetAssignment), which analytics count with the
	// current drone's time.
	AssignedBeforeMs  int64      `json:"assignedBeforeMs,omitempty"`
	PackageID         string     `json:"packageId,omitempty"`
	PackageRecordedAt *time.Time `json:"packageRecordedAt,omitempty"`
	PickupETA         *time.Time `json:"pickupETA,omitempty"`
	DeliveryETA       *time.Time `json:"deliveryETA,omitempty"`
	LastKnownLocation *Location  `json:"lastKnownLocation,omitempty"`
	// DispatchAt is set on a booked pickup (Book): no drone is claimed
	// for it before then.
	DispatchAt *time.Time `json:"dispatchAt,omitempty"`
	// PlannedRoute is the path the assigned drone is to fly, once
	// scheduled.
	PlannedRoute     *PlannedRoute `json:"plannedRoute,omitempty"`
	ScheduleAttempts int           `json:"scheduleAttempts,omitempty"`
	FailureReason    string        `json:"failureReason,omitempty"`
	// Outcome says what became of an aborted delivery's package.
	Outcome AbortOutcome `json:"outcome,omitempty"`
	// AvoidDroneID is the drone a handed-on delivery was taken from;
	// dispatch does not give it that drone again, unless no other serves
	// it and the operator took that one out (ground, recall) rather than
	// reassigning the delivery, and it is back in service
	// (AvoidsItsDroneOnlyWhileOut).
	AvoidDroneID string `json:"avoidDroneId,omitempty"`
	// ReassignedFrom are the drones the operator reassigned the delivery
	// away from (the last MaxReassignedFrom): dispatch never gives it one
	// of them again, however often it is handed on since.
	ReassignedFrom []string `json:"reassignedFrom,omitempty"`
	// HeldReason says why dispatch holds the delivery (a service pause);
	// empty when it is not held.
	HeldReason  string     `json:"heldReason,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	ScheduledAt *time.Time `json:"scheduledAt,omitempty"`
	UpdatedAt   time.Time  `json:"updatedAt"`

	// Generation counts reschedules; messages of an older generation are
	// stale and ignored. ResetGeneration is the generation whose earlier
	// assignment was released.
	Generation      int `json:"generation,omitempty"`
	ResetGeneration int `json:"resetGeneration,omitempty"`
	// PreviousDroneID is the drone the generation before this one held.
	PreviousDroneID string `json:"previousDroneId,omitempty"`
	// PreemptedBy is the expedited delivery that last took this
	// delivery's drone (Preempt); Preempted, on an expedited delivery,
	// the delivery whose drone it took (ReserveTakeover).
	PreemptedBy string      `json:"preemptedBy,omitempty"`
	Preempted   *Preemption `json:"preempted,omitempty"`

	PickedUpAt      *time.Time   `json:"pickedUpAt,omitempty"`
	CompletedAt     *time.Time   `json:"completedAt,omitempty"`
	CancelledAt     *time.Time   `json:"cancelledAt,omitempty"`
	LastTelemetryAt *time.Time   `json:"lastTelemetryAt,omitempty"`
	TraveledKm      float64      `json:"traveledKm,omitempty"`
	Trail           []TrailPoint `json:"trail,omitempty"`
	// ThinnedThrough is the time of the newest point of the part of the
	// trail thinTrail has thinned: a report dated no later is not filed,
	// as it may be one thinned away, whose distance is counted already.
	ThinnedThrough *time.Time     `json:"thinnedThrough,omitempty"`
	History        []Event        `json:"history,omitempty"`
	Notifications  []Notification `json:"notifications,omitempty"`
	// NotificationCount is how many notices the delivery ever issued; it
	// numbers them, since Notifications keeps only the newest
	// MaxNotifications.
	NotificationCount   int           `json:"notificationCount,omitempty"`
	NotifiedDeliveryETA *time.Time    `json:"notifiedDeliveryETA,omitempty"`
	Confirmation        *Confirmation `json:"confirmation,omitempty"`

	// Subscriptions are the customers' notify-me requests: who hears of
	// each milestone by e-mail or SMS.
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	// EndedSubscriptions are the subscriptions the business ended, kept so
	// that the unsubscribe links already sent for them still work.
	EndedSubscriptions []EndedSubscription `json:"endedSubscriptions,omitempty"`
	// SubscriptionsMade counts the subscriptions ever made on the delivery
	// (MaxSubscriptionsMade bounds it).
	SubscriptionsMade int `json:"subscriptionsMade,omitempty"`
}

// Event is one entry of a delivery's append-only history: a change of
// stage, or, when Kind says so, something that happened in a stage.
type Event struct {
	Stage    Stage     `json:"stage"`
	At       time.Time `json:"at"`
	DroneID  string    `json:"droneId,omitempty"`
	Location *Location `json:"location,omitempty"`
	Note     string    `json:"note,omitempty"`
	// Kind is empty for a change of stage; EventConfirmed marks the proof
	// of delivery, recorded in the stage the delivery was in;
	// EventTruncated stands for Omitted earlier events.
	Kind    string `json:"kind,omitempty"`
	Omitted int    `json:"omitted,omitempty"`
	// By is who took an operator's action (EventOperator); ActionID the
	// id the caller gave the action, which makes repeating it a no-op.
	By       string `json:"by,omitempty"`
	ActionID string `json:"actionId,omitempty"`
}

// EventConfirmed is the Kind of the history event of a proof of delivery.
const EventConfirmed = "confirmed"

// EventDispatched is the Kind of the history event of the drone of a
// booked pickup being dispatched.
const EventDispatched = "dispatched"

// TrailPoint is one reported position of the drone flying a delivery.
type TrailPoint struct {
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	At        time.Time `json:"at"`
}

// Notification is a milestone the customer is told about.
type Notification struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Message     string     `json:"message"`
	At          time.Time  `json:"at"`
	Stage       Stage      `json:"stage"`
	PickupETA   *time.Time `json:"pickupETA,omitempty"`
	DeliveryETA *time.Time `json:"deliveryETA,omitempty"`
}

// Confirmation is the recipient's proof of delivery as the delivery keeps
// it. Its blob (a picture, a voice recording, a fingerprint), when it has
// one, is stored apart as a ConfirmationBlob; the delivery keeps its type,
// size and hash.
type Confirmation struct {
	DateTime         time.Time        `json:"dateTime"` // when the recipient confirmed, by their clock
	GeoCoordinates   Location         `json:"geoCoordinates"`
	ConfirmationType ConfirmationType `json:"confirmationType"`
	BlobType         string           `json:"blobType,omitempty"`   // the blob's media type
	BlobBytes        int              `json:"blobBytes,omitempty"`  // its decoded size
	BlobSHA256       string           `json:"blobSha256,omitempty"` // hex; names the ConfirmationBlob
	// DistanceMeters is how far from the dropoff it was given, to 0.1 m.
	DistanceMeters float64   `json:"distanceMeters"`
	ReceivedAt     time.Time `json:"receivedAt"` // when the service accepted it
}

// ConfirmationBlob is the content of a proof of delivery. It is kept apart
// from the delivery, which every step, listing and report reads, so that
// only a request for the proof itself reads the blob.
type ConfirmationBlob struct {
	ID          string    `json:"id"` // ConfirmationBlobID of the delivery and the content
	DeliveryID  string    `json:"deliveryId"`
	OwnerID     string    `json:"ownerId"`
	ContentType string    `json:"contentType"`
	Data        []byte    `json:"data"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ConfirmationBlobID names a delivery's blob by its content's SHA-256 (in
// hex): of two confirmations racing, the loser's blob can never overwrite
// the winner's, and a retried request writes the same document again.
func ConfirmationBlobID(deliveryID, sha256Hex string) string { return deliveryID + "." + sha256Hex }

// DroneStatus is what a drone is doing.
type DroneStatus string

// The drone statuses; only Available drones are dispatched. A Retired
// drone has left the fleet for good, as far as the operator knows: it is
// kept for its history and may be put back, but it is neither dispatched
// nor counted in what the fleet could ever serve (FleetSummary), where a
// drone in Maintenance is, since it will serve again.
const (
	DroneAvailable   DroneStatus = "Available"
	DroneAssigned    DroneStatus = "Assigned"
	DroneInFlight    DroneStatus = "InFlight"
	DroneCharging    DroneStatus = "Charging"
	DroneMaintenance DroneStatus = "Maintenance"
	DroneRetired     DroneStatus = "Retired"
)

// Drone is one aircraft of the fleet. RangeKm is the distance it can fly on
// its current charge, keeping the reserve; FullRangeKm the distance at a
// full charge (battery.go has the model).
type Drone struct {
	ID                string      `json:"id"`
	Location          Location    `json:"location"`
	HomeBase          Location    `json:"homeBase"`
	MaxPayloadKg      float64     `json:"maxPayloadKg"`
	MaxPackageSize    PackageSize `json:"maxPackageSize"`
	RangeKm           float64     `json:"rangeKm"`
	FullRangeKm       float64     `json:"fullRangeKm,omitempty"`
	CruiseSpeedMps    float64     `json:"cruiseSpeedMps"`
	BatteryPercent    float64     `json:"batteryPercent"`
	Status            DroneStatus `json:"status"`
	CurrentDeliveryID string      `json:"currentDeliveryId,omitempty"`
	// CurrentGeneration is the reschedule generation of the delivery the
	// drone was claimed for, so releasing an earlier generation's drone
	// never frees one the current generation holds.
	CurrentGeneration int `json:"currentGeneration,omitempty"`
	// ClaimedAfterReport is the time of the newest report the drone had
	// sent when it was claimed for its current delivery: a report dated no
	// later belongs to an earlier flight (FlightOf), however late the queue
	// brings it.
	ClaimedAfterReport *time.Time `json:"claimedAfterReport,omitempty"`
	LastTelemetryAt    *time.Time `json:"lastTelemetryAt,omitempty"`
	// ChargeDueAt is when a Charging drone that sends no reports is
	// charged (StartCharging).
	ChargeDueAt *time.Time `json:"chargeDueAt,omitempty"`
	// Recalled is set while a drone the operator recalled flies back to
	// its home base; StatusReason says why the operator grounded or
	// recalled it.
	Recalled bool `json:"recalled,omitempty"`
	// Grounded is set while the operator's ground holds: a recall then
	// brings the drone home and leaves it in Maintenance, and only a PUT
	// returns it to service.
	Grounded bool `json:"grounded,omitempty"`
	// ResumedAt is when the operator last put the drone back in service
	// (Resume): a ground or recall asked before then, whose queued repeat
	// comes late, is not applied again.
	ResumedAt    *time.Time `json:"resumedAt,omitempty"`
	StatusReason string     `json:"statusReason,omitempty"`
	UpdatedAt    time.Time  `json:"updatedAt"`
}

// Package is the record of a package and the delivery carrying it. Package
// ids are the businesses' own: two accounts may use the same one, so the
// record is stored under PackageKey(owner, package id).
type Package struct {
	ID         string      `json:"id"`                  // PackageKey(OwnerID, PackageID)
	PackageID  string      `json:"packageId,omitempty"` // as the business gave it
	OwnerID    string      `json:"ownerId"`
	DeliveryID string      `json:"deliveryId"`
	Size       PackageSize `json:"size"`
	Weight     float64     `json:"weight"`
	Tag        string      `json:"tag,omitempty"`
	Status     string      `json:"status"` // Booked, Scheduled, Delivered, Cancelled or Failed
	CreatedAt  time.Time   `json:"createdAt"`
	UpdatedAt  time.Time   `json:"updatedAt"`
}

// PackageKey is the key a package is stored under: its owner's account id
// and the business's package id, joined by a character package ids cannot
// contain (ValidID), so no two pairs share a key.
func PackageKey(ownerID, packageID string) string { return ownerID + ":" + packageID }
