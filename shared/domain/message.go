package domain

import (
	"encoding/json"
)

// Operation is what a message on the delivery-requests queue asks for.
type Operation string

// The operations of the reference API's queue messages.
const (
	OpDelivery   Operation = "delivery"
	OpCancel     Operation = "cancel"
	OpReschedule Operation = "reschedule"
)

// Envelope is the JSON body of every message between steps. The store is
// the source of truth; the envelope says which delivery to advance and
// carries the correlation id born at ingest.
type Envelope struct {
	Operation     Operation       `json:"operation"`
	DeliveryID    string          `json:"deliveryId"`
	CorrelationID string          `json:"correlationId"`
	Attempt       int             `json:"attempt,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
}

// ParseEnvelope decodes and validates a message body. A body that fails here
// can never succeed, so the error is Permanent.
func ParseEnvelope(body []byte) (*Envelope, error) {
	var e Envelope
	if err := DecodeStrict(body, &e); err != nil {
		return nil, &Permanent{Err: err}
	}
	switch e.Operation {
	case OpDelivery, OpCancel, OpReschedule:
	default:
		return nil, &Permanent{Err: Invalid("operation", "must be one of delivery, cancel, reschedule")}
	}
	if err := ValidID("deliveryId", e.DeliveryID); err != nil {
		return nil, &Permanent{Err: err}
	}
	if e.Attempt < 0 {
		return nil, &Permanent{Err: Invalid("attempt", "must not be negative")}
	}
	return &e, nil
}
