package domain

import "time"

// Pause is a stop of service the operator declares, for weather or an
// airspace closure: everywhere, or in one service area (AreaID), until it
// is lifted or Until passes. While a pause covers a pickup, new requests
// there are refused with its reason and dispatch holds the deliveries
// waiting there; drones already flying go on.
type Pause struct {
	ID        string    `json:"pauseId"`
	AreaID    string    `json:"areaId,omitempty"`
	Reason    string    `json:"reason"`
	Until     time.Time `json:"until,omitzero"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// MaxPauses bounds the pauses kept: every request checks them all. Only
// pauses in force count; a put removes the expired ones before it counts,
// so the store still holds no more than this.
const MaxPauses = 100

// ActiveAt reports whether p is in force at t.
func (p *Pause) ActiveAt(t time.Time) bool { return p.Until.IsZero() || t.Before(p.Until) }

// PauseState is where a pause stands at a time. A pause has no start of
// its own: it is in force from when it is put, so none is ever waiting
// to start.
type PauseState string

const (
	// PauseActive is a pause in force: with no Until, or before it.
	PauseActive PauseState = "active"
	// PauseExpired is a pause whose Until has passed: it covers nothing,
	// and does not count toward MaxPauses.
	PauseExpired PauseState = "expired"
)

// StateAt returns where p stands at t.
func (p *Pause) StateAt(t time.Time) PauseState {
	if p.ActiveAt(t) {
		return PauseActive
	}
	return PauseExpired
}

// Hold is what Pauses.Covering reports of the pause that covers a place:
// its reason and, when it has one, when it ends.
type Hold struct {
	PauseID string
	Reason  string
	Until   time.Time // zero: until lifted
}

// Hold marks a delivery held by a pause (dispatch waits), or returns
// ErrNoChange when it is held for that reason already.
func (d *Delivery) Hold(reason string, now time.Time) error {
	if d.HeldReason == reason || d.Stage.Terminal() || d.DroneAssignedAt != nil {
		return ErrNoChange
	}
	d.HeldReason = reason
	d.Touch(now)
	return nil
}

// Unhold clears the mark of Hold once dispatch goes on.
func (d *Delivery) Unhold(now time.Time) error {
	if d.HeldReason == "" {
		return ErrNoChange
	}
	d.HeldReason = ""
	d.Touch(now)
	return nil
}
