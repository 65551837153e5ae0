package host

import (
	"errors"
	"time"
)

// RetryPolicy says when a queue message whose step failed transiently is
// tried again.
//
// Under the Functions host a non-2xx answer fails the invocation and the
// Service Bus extension abandons the message, which the broker delivers
// again at once: nothing waits in between, and the host's retry policies do
// not apply to Service Bus triggers. A Cosmos DB throttle would then use up
// a message's ten deliveries in seconds and dead-letter it. So the handler
// waits itself: it publishes a copy of the message scheduled for later
// (a new message id per attempt, wire.RedeliveryID) and answers 2xx, which
// completes the original.
type RetryPolicy struct {
	// First is the delay before the first retry; each later retry waits
	// twice as long as the one before, up to Max, plus up to a quarter
	// more at random so that messages failed together do not return
	// together.
	First time.Duration
	Max   time.Duration
	// Attempts is how many retries are scheduled. A custom handler cannot
	// dead-letter a message, so when the last one fails too the handler
	// answers 500: the broker then delivers that copy again at once until
	// the queue's maxDeliveryCount, and dead-letters it with
	// MaxDeliveryCountExceeded, where the deadletters command finds it.
	Attempts int
}

// DefaultRetry waits 2 s, 4 s, … up to 5 minutes between eight retries:
// about nine minutes in all, enough to ride out a throttled Cosmos DB or a
// Service Bus failover.
var DefaultRetry = RetryPolicy{First: 2 * time.Second, Max: 5 * time.Minute, Attempts: 8}

func (p RetryPolicy) check() error {
	if p.First <= 0 || p.Max < p.First || p.Attempts < 0 {
		return errors.New("retry policy: want 0 < First ≤ Max and Attempts ≥ 0")
	}
	return nil
}

// delay is the wait before retry n (1 for the first), with jitter in [0, 1).
func (p RetryPolicy) delay(n int, jitter float64) time.Duration {
	d := p.First
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d + time.Duration(jitter*float64(d)/4)
}
