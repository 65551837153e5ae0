package wire

import (
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Operation is what a message on the delivery-requests queue asks for.
type Operation string

// The operations of the reference API's queue messages.
const (
	OpDelivery   Operation = "delivery"
	OpCancel     Operation = "cancel"
	OpReschedule Operation = "reschedule"
	OpNotify     Operation = "notify"
	// OpCustomerMessage sends one milestone to one subscription on one
	// channel (the customer-messages queue).
	OpCustomerMessage Operation = "customer-message"
	// OpChargeCheck asks the tracking step (drone-telemetry queue) to
	// return a charging drone to service once its charge is due.
	OpChargeCheck Operation = "charge-check"
	// OpDroneAction asks the tracking step (drone-telemetry queue) to
	// finish an operator's ground or recall of a drone that held a
	// delivery: the hand-over of the delivery and the drone's own write,
	// each a no-op once made, so that a crash between them is repaired.
	OpDroneAction Operation = "drone-action"
)

// DroneActionMessage is the body of an OpDroneAction message: the action
// (ground or recall) on DroneID, and the delivery it held, in the
// generation it held it for.
type DroneActionMessage struct {
	DroneID    string `json:"droneId"`
	Action     string `json:"action"`
	Reason     string `json:"reason"`
	By         string `json:"by"`
	ActionID   string `json:"actionId,omitempty"`
	DeliveryID string `json:"deliveryId"`
	Generation int    `json:"generation,omitempty"`
	// At is when the action was asked (zero in messages of builds before
	// it): a drone put back in service since is left as it is.
	At time.Time `json:"at,omitzero"`
}

// ParseDroneActionMessage decodes an OpDroneAction message; a body that
// fails here can never succeed (domain.Permanent).
func ParseDroneActionMessage(body []byte) (*DroneActionMessage, error) {
	return decodeMessage(body, (*DroneActionMessage).validate)
}

func (m *DroneActionMessage) validate() error {
	if err := domain.ValidID("droneId", m.DroneID); err != nil {
		return err
	}
	if err := domain.ValidID("deliveryId", m.DeliveryID); err != nil {
		return err
	}
	if a := domain.DroneAction(m.Action); a != domain.ActionGround && a != domain.ActionRecall {
		return domain.Invalid("action", "must be ground or recall")
	}
	return nil
}

// ChargeCheck is the body of an OpChargeCheck message.
type ChargeCheck struct {
	DroneID string `json:"droneId"`
}

// ParseChargeCheck decodes an OpChargeCheck message; a body that fails here
// can never succeed (domain.Permanent).
func ParseChargeCheck(body []byte) (*ChargeCheck, error) {
	return decodeMessage(body, func(c *ChargeCheck) error { return domain.ValidID("droneId", c.DroneID) })
}

// decodeMessage decodes a queue message's body and validates it. Any error
// is domain.Permanent: the same body can never succeed, so the message is
// settled rather than retried.
func decodeMessage[T any](body []byte, validate func(*T) error) (*T, error) {
	var m T
	if err := tolerantDecode(body, &m); err != nil {
		return nil, &domain.Permanent{Err: err}
	}
	if err := validate(&m); err != nil {
		return nil, &domain.Permanent{Err: err}
	}
	return &m, nil
}

// tolerantDecode decodes the JSON body of a message between the steps into
// v as a tolerant reader: unlike DecodeStrict, meant for what strangers
// send, it ignores fields it does not know. Only this service writes its
// queues, and during a deploy instances of the old build and the new one
// take messages from the same queues, so a field that a newer build adds
// must not make an older one refuse, and dead-letter, what it can still
// carry out. What no build writes is refused: invalid UTF-8, a key given
// twice, trailing data, and a value of the wrong type, by the field's
// name; each message's own checks (validate) then refuse a value out of
// range. The service writes its messages with encoding/json and reads them
// with encoding/json/v2 (the module github.com/go-json-experiment/json),
// which refuses all of that itself in one pass, matches field names
// exactly as they are written, and bounds nesting (at 10,000 levels).
func tolerantDecode(body []byte, v any) error {
	err := jsonv2.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var sem *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &sem) && sem.GoType != nil && sem.JSONKind != 0:
		return &domain.Error{Code: domain.EINVALID, Field: pointerField(sem.JSONPointer), Message: "must be of type " + jsonType(sem.GoType.Kind().String()), Err: err}
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return &domain.Error{Code: domain.EINVALID, Field: pointerField(syn.JSONPointer), Message: "is given more than once", Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is empty or truncated JSON", Err: err}
	case !utf8.Valid(body):
		return domain.Invalid("body", "must be valid UTF-8")
	}
	return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is not valid JSON", Err: err}
}

// pointerField writes a JSON pointer (/packageInfo/weight, /legs/0) the way
// the strict decoder names fields (packageInfo.weight, legs[0]).
func pointerField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return orBody(b.String())
}

// Envelope is the JSON body of every message between steps. The store is
// the source of truth; the envelope says which delivery to advance and
// carries the correlation id born at ingest.
type Envelope struct {
	Operation     Operation `json:"operation"`
	DeliveryID    string    `json:"deliveryId"`
	CorrelationID string    `json:"correlationId"`
	Attempt       int       `json:"attempt,omitempty"`
	// Wake marks a dispatch run asked for by the fair-share rule, for a
	// waiting delivery a drone has come free for: when it finds none, it
	// schedules no retry of its own, since the delivery's retries go on.
	Wake bool `json:"wake,omitempty"`
	// Generation is the delivery's reschedule count when the message was
	// sent; a step ignores a message of an older generation.
	Generation int `json:"generation,omitempty"`
	// NotificationID names the notification an OpNotify message sends.
	NotificationID string `json:"notificationId,omitempty"`
	// SubscriptionID and Channel say who an OpCustomerMessage message goes
	// to, and how.
	SubscriptionID string          `json:"subscriptionId,omitempty"`
	Channel        domain.Channel  `json:"channel,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	// Replay marks a message an operator replayed from the dead-letter
	// queue (the n of the replay's id, "…:replay-<n>"): the retries and
	// waits its step sends are named after it (RetryStep), since the
	// attempt count starts again and the original's retries, under the
	// same names, may still be in the bus's duplicate-detection window.
	Replay string `json:"replay,omitempty"`
	// ThrottledSince is when the provider first throttled the customer
	// message an OpCustomerMessage message sends, by the service's clock:
	// its waits stop a day after.
	ThrottledSince *time.Time `json:"throttledSince,omitempty"`
}

// RetryStep is the step name of a message that tries e's step again
// (retry-<n>, wait-<hash>): the name itself, or, for a replayed message,
// the name under the replay's.
func (e *Envelope) RetryStep(step string) string {
	if e.Replay == "" {
		return step
	}
	return "replay-" + e.Replay + "-" + step
}

// ParseEnvelope decodes and validates a message body. A body that fails here
// can never succeed, so the error is domain.Permanent.
func ParseEnvelope(body []byte) (*Envelope, error) {
	return decodeMessage(body, (*Envelope).validate)
}

func (e *Envelope) validate() error {
	switch e.Operation {
	case OpDelivery, OpCancel, OpReschedule, OpNotify, OpCustomerMessage:
	default:
		return domain.Invalid("operation", "must be one of delivery, cancel, reschedule, notify, customer-message")
	}
	if err := domain.ValidID("deliveryId", e.DeliveryID); err != nil {
		return err
	}
	// The correlation id rides every log line and message after this one.
	if err := domain.ValidText("correlationId", e.CorrelationID, domain.MaxIDLength); err != nil {
		return err
	}
	if e.Attempt < 0 {
		return domain.Invalid("attempt", "must not be negative")
	}
	if e.Generation < 0 {
		return domain.Invalid("generation", "must not be negative")
	}
	if (e.Operation == OpNotify || e.Operation == OpCustomerMessage) && e.NotificationID == "" {
		return domain.Invalid("notificationId", "is required for %s", e.Operation)
	}
	if e.Operation == OpCustomerMessage {
		if err := domain.ValidID("subscriptionId", e.SubscriptionID); err != nil {
			return err
		}
		if e.Channel != domain.ChannelEmail && e.Channel != domain.ChannelSMS {
			return domain.Invalid("channel", "must be email or sms")
		}
	} else if e.SubscriptionID != "" || e.Channel != "" {
		return domain.Invalid("subscriptionId", "belongs to customer-message only")
	}
	// A notification id is its delivery's id and a ":n<sequence>" suffix.
	return domain.ValidText("notificationId", e.NotificationID, domain.MaxIDLength+16)
}

// ParseTelemetryMessage decodes and validates a telemetry queue message.
func ParseTelemetryMessage(body []byte) (*domain.Telemetry, error) {
	var t struct {
		DroneID        string          `json:"droneId"`
		Location       json.RawMessage `json:"location"`
		BatteryPercent *float64        `json:"batteryPercent"`
		Timestamp      *string         `json:"timestamp"`
	}
	if err := tolerantDecode(body, &t); err != nil {
		return nil, &domain.Permanent{Err: err}
	}
	r, err := telemetryReport(t.DroneID, "", t.Location, t.BatteryPercent, t.Timestamp)
	if err != nil {
		return nil, &domain.Permanent{Err: err}
	}
	return r, nil
}
