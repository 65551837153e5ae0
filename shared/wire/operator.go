package wire

import (
	"slices"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// MaxReasonLength bounds the reason of an operator's action or pause, in
// characters.
const MaxReasonLength = 500

type actionWire struct {
	Action   *string `json:"action"`
	Reason   *string `json:"reason"`
	Outcome  *string `json:"outcome"`
	ActionID *string `json:"actionId"`
}

// Reason checks the operator's reason for an action or a pause: required,
// 1 to MaxReasonLength characters, not blank, and free text as
// domain.ValidText has it (customers read it: a pause's reason is the
// "held: …" of their tracking page).
func Reason(field string, s *string) (string, error) {
	if s == nil || strings.TrimSpace(*s) == "" {
		return "", domain.Invalid(field, "is required: say why")
	}
	if err := domain.ValidText(field, *s, MaxReasonLength); err != nil {
		return "", err
	}
	return strings.TrimSpace(*s), nil
}

// decodeAction decodes an action's body and checks the action, which must
// be one of the actions named, before the reason, so that a wrong action
// is named as such whatever else is missing.
func decodeAction(body []byte, actions ...string) (*actionWire, string, string, error) {
	var w actionWire
	if err := DecodeStrict(body, &w); err != nil {
		return nil, "", "", err
	}
	if w.Action == nil {
		return nil, "", "", domain.Invalid("action", "is required")
	}
	if !slices.Contains(actions, *w.Action) {
		return nil, "", "", domain.Invalid("action", "must be %s or %s", strings.Join(actions[:len(actions)-1], ", "), actions[len(actions)-1])
	}
	reason, err := Reason("reason", w.Reason)
	if err != nil {
		return nil, "", "", err
	}
	id := ""
	if w.ActionID != nil {
		if err := domain.ValidID("actionId", *w.ActionID); err != nil {
			return nil, "", "", err
		}
		id = *w.ActionID
	}
	return &w, reason, id, nil
}

// ParseDroneAction decodes POST /api/drones/{id}/actions:
// {action: ground|recall|resume|charge, reason, actionId?}.
func ParseDroneAction(body []byte) (domain.DroneAction, domain.OperatorAction, error) {
	w, reason, id, err := decodeAction(body, string(domain.ActionGround), string(domain.ActionRecall),
		string(domain.ActionResume), string(domain.ActionCharge))
	if err != nil {
		return "", domain.OperatorAction{}, err
	}
	a := domain.DroneAction(*w.Action)
	if w.Outcome != nil {
		return "", domain.OperatorAction{}, domain.Invalid("outcome", "is for aborting a delivery, not for a drone's action")
	}
	return a, domain.OperatorAction{Name: string(a), Reason: reason, ActionID: id}, nil
}

// ParseDeliveryAction decodes POST /api/deliveries/{id}/actions:
// {action: reassign|abort, reason, outcome?, actionId?}; outcome (failed,
// the default, or returnedToSender) is for abort only.
func ParseDeliveryAction(body []byte) (domain.DeliveryAction, domain.AbortOutcome, domain.OperatorAction, error) {
	w, reason, id, err := decodeAction(body, string(domain.ActionReassign), string(domain.ActionAbort))
	if err != nil {
		return "", "", domain.OperatorAction{}, err
	}
	a := domain.DeliveryAction(*w.Action)
	outcome := domain.OutcomeFailed
	if w.Outcome != nil {
		if a != domain.ActionAbort {
			return "", "", domain.OperatorAction{}, domain.Invalid("outcome", "is for abort only")
		}
		outcome = domain.AbortOutcome(*w.Outcome)
		if outcome != domain.OutcomeFailed && outcome != domain.OutcomeReturnedToSender {
			return "", "", domain.OperatorAction{}, domain.Invalid("outcome", "must be failed or returnedToSender")
		}
	}
	return a, outcome, domain.OperatorAction{Name: string(a), Reason: reason, ActionID: id}, nil
}
