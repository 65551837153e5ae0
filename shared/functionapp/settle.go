package functionapp

import (
	"context"
	"fmt"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Outcome is how a runtime must settle a message after its handler ran.
type Outcome int

// The outcomes of processing a message.
const (
	Done      Outcome = iota // complete the message
	Retry                    // abandon it so the bus redelivers it
	Poisonous                // it can never succeed: dead-letter it, or fail it where the runtime cannot, so that the broker does
)

// Process runs a queue function (wrapped by the registry's middleware, see
// Standard) and publishes what it produced. Outputs are
// published before the caller settles the input, so a crash in between
// redelivers the input and the idempotent step emits the same messages
// again, which duplicate detection drops.
func Process(ctx context.Context, fn QueueFunc, pub ports.Publisher, msg *ports.Delivered) (Outcome, error) {
	out, err := fn(ctx, msg)
	if err != nil {
		if domain.IsPermanent(err) {
			return Poisonous, err
		}
		return Retry, err
	}
	if len(out) > 0 {
		if err := pub.Publish(ctx, out...); err != nil {
			return Retry, fmt.Errorf("publish %d messages: %w", len(out), err)
		}
	}
	return Done, nil
}

// PoisonReason is the dead-letter reason of a message its step refused as
// one that can never succeed (Poisonous).
const PoisonReason = "ProcessingFailed"

// maxDescription is the most of a step's error a dead-letter description
// carries: its first line says what it was, and a panic's stack trace
// stays in the log.
const maxDescription = 1024

// PoisonDescription is the dead-letter description of a Poisonous message:
// the step's error, cut to maxDescription bytes without splitting a
// character.
func PoisonDescription(err error) string {
	s := err.Error()
	if len(s) <= maxDescription {
		return s
	}
	return strings.ToValidUTF8(s[:maxDescription], "")
}
