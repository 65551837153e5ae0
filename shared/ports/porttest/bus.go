package porttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BusOptions are the queue settings a Bus test needs; zero means the
// adapter's default. An adapter applies them to the queues it creates.
type BusOptions struct {
	// LockDuration is how long a received message stays locked.
	LockDuration time.Duration
	// MaxDeliveryCount is how many deliveries a message gets before it
	// is dead-lettered.
	MaxDeliveryCount int
}

// shortDelay is long enough to tell "later" from "at once" on a loaded
// machine, and short enough to keep the suite quick.
const shortDelay = 300 * time.Millisecond

// timerSlack is how far before its NotBefore, by this process's clock, a
// scheduled message may arrive and still count as on time. A bus may keep
// the time in whole milliseconds (AMQP timestamps cut it down), and one in
// another process waits by its own timers, which can fire a millisecond
// early (Node's do). A message delivered at once, ignoring its schedule,
// is about shortDelay early and still fails.
const timerSlack = 5 * time.Millisecond

// Bus checks the peek-lock semantics of a bus: ordering, duplicate
// detection, scheduled messages, abandon, dead-lettering, lock expiry,
// blocking receive and competing consumers. Each test uses its own queues,
// so open may return one shared bus per options.
func Bus(t *testing.T, open func(t *testing.T, o BusOptions) ports.Bus) {
	setup := func(t *testing.T, o BusOptions) (ports.Bus, string) {
		t.Parallel()
		return open(t, o), unique("q")
	}

	t.Run("PublishReceiveComplete", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		sent := message(q, "m1")
		sent.CorrelationID, sent.Operation = "corr-1", string(wire.OpDelivery)
		before := time.Now()
		require.NoError(t, bus.Publish(ctx, sent), "publish")

		m := receiveOne(t, bus, q)
		require.Equal(t, []string{sent.ID, string(sent.Body), sent.CorrelationID, sent.Operation, q},
			[]string{m.ID, string(m.Body), m.CorrelationID, m.Operation, m.Queue}, "received id, body, correlation, operation, queue")
		require.Equal(t, 1, m.DeliveryCount, "delivery count")
		require.NotEmpty(t, m.LockToken, "lock token")
		require.NotZero(t, m.SequenceNumber, "sequence number")
		require.False(t, m.EnqueuedAt.IsZero(), "enqueued at")
		require.True(t, m.LockedUntil.After(before), "locked until %v, which is before the publish at %v", m.LockedUntil, before)
		require.NoError(t, bus.Complete(ctx, m), "complete")
		expectEmpty(t, bus, q)
		mustCode(t, bus.Complete(ctx, m), domain.ECONFLICT, "second complete")
		mustCode(t, bus.Abandon(ctx, m), domain.ECONFLICT, "abandon after complete")
		mustCode(t, bus.DeadLetter(ctx, m, "r", "d"), domain.ECONFLICT, "dead-letter after complete")
	})

	t.Run("TraceContext", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		// A message's own context travels as it is when ctx has no span.
		kept := message(q, "kept")
		kept.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		kept.TraceState = "congo=t61rcWkgMzE"
		require.NoError(t, bus.Publish(ctx, kept), "publish")
		// A span in ctx makes the message its child.
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
			TraceFlags: trace.FlagsSampled,
		})
		stamped := message(q, "stamped")
		require.NoError(t, bus.Publish(trace.ContextWithSpanContext(ctx, sc), stamped), "publish under a span")
		none := message(q, "none")
		require.NoError(t, bus.Publish(ctx, none), "publish without a context")

		got := receiveN(t, bus, q, 3, 10)
		want := []string{
			kept.TraceParent + " " + kept.TraceState,
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
			" ",
		}
		var have []string
		for _, m := range got {
			have = append(have, m.TraceParent+" "+m.TraceState)
			require.NoError(t, bus.Complete(ctx, m), "complete")
		}
		require.Equal(t, want, have, "trace context received")
	})

	t.Run("Order", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		var want []string
		for i := range 5 {
			m := message(q, fmt.Sprintf("single-%d", i))
			require.NoError(t, bus.Publish(ctx, m), "publish")
			want = append(want, m.ID)
		}
		var batch []ports.Message
		for i := range 5 {
			batch = append(batch, message(q, fmt.Sprintf("batch-%d", i)))
			want = append(want, batch[i].ID)
		}
		require.NoError(t, bus.Publish(ctx, batch...), "publish batch")

		got := receiveN(t, bus, q, len(want), 3)
		var ids []string
		for i, m := range got {
			ids = append(ids, m.ID)
			if i > 0 {
				require.Greater(t, m.SequenceNumber, got[i-1].SequenceNumber, "sequence numbers in order")
			}
			require.NoError(t, bus.Complete(ctx, m), "complete")
		}
		require.Equal(t, want, ids, "order of receipt")
	})

	t.Run("DuplicateIDDropped", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		other := q + "-other"
		ctx := ctxFor(t)
		a, b := message(q, "a"), message(q, "b")
		require.NoError(t, bus.Publish(ctx, a), "publish")
		dup := a
		dup.Body = []byte(`{"duplicate":true}`)
		require.NoError(t, bus.Publish(ctx, dup), "publish a duplicate")
		require.NoError(t, bus.Publish(ctx, b, b), "publish a batch holding a duplicate")
		elsewhere := a
		elsewhere.Queue = other
		require.NoError(t, bus.Publish(ctx, elsewhere), "publish the same id to another queue")

		got := receiveN(t, bus, q, 2, 10)
		require.Equal(t, []string{a.ID, b.ID}, []string{got[0].ID, got[1].ID}, "ids received")
		require.Equal(t, string(a.Body), string(got[0].Body), "body of the first publish")
		for _, m := range got {
			require.NoError(t, bus.Complete(ctx, m), "complete")
		}
		// Duplicate detection remembers ids, not just pending messages.
		require.NoError(t, bus.Publish(ctx, a), "publish again after completion")
		expectEmpty(t, bus, q)

		m := receiveOne(t, bus, other)
		require.Equal(t, a.ID, m.ID, "id on the other queue")
		require.NoError(t, bus.Complete(ctx, m), "complete")
	})

	t.Run("NotBeforeDelays", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		// An hour off, so that however slow the receive, the due message
		// published beside it is the one delivered.
		distant := message(q, "distant")
		distant.NotBefore = time.Now().Add(time.Hour)
		now := message(q, "now")
		require.NoError(t, bus.Publish(ctx, distant, now), "publish")

		first := receiveOne(t, bus, q)
		require.Equal(t, now.ID, first.ID, "first message received")
		require.NoError(t, bus.Complete(ctx, first), "complete")

		// A short delay is waited out, never cut short.
		later := message(q, "later")
		later.NotBefore = time.Now().Add(shortDelay)
		require.NoError(t, bus.Publish(ctx, later), "publish")
		second := receiveOne(t, bus, q)
		require.Equal(t, later.ID, second.ID, "second message received")
		earliest := later.NotBefore.Truncate(time.Millisecond).Add(-timerSlack)
		require.False(t, time.Now().Before(earliest), "received before its NotBefore %v", later.NotBefore)
		require.NoError(t, bus.Complete(ctx, second), "complete")
	})

	t.Run("AbandonRedelivers", func(t *testing.T) {
		// A lock far longer than patience: only the abandon can free it.
		bus, q := setup(t, BusOptions{LockDuration: time.Minute})
		ctx := ctxFor(t)
		require.NoError(t, bus.Publish(ctx, message(q, "m")), "publish")
		first := receiveOne(t, bus, q)
		require.NoError(t, bus.Abandon(ctx, first), "abandon")
		second := receiveOne(t, bus, q)
		require.Equal(t, first.ID, second.ID, "redelivered")
		require.Equal(t, 2, second.DeliveryCount, "the redelivery's count")
		require.NotEqual(t, first.LockToken, second.LockToken, "the redelivery kept the old lock token")
		mustCode(t, bus.Complete(ctx, first), domain.ECONFLICT, "complete with the abandoned lock")
		require.NoError(t, bus.Complete(ctx, second), "complete")
	})

	t.Run("DeadLetterAndReplay", func(t *testing.T) {
		bus, q := setup(t, BusOptions{LockDuration: time.Minute})
		ctx := ctxFor(t)
		sent := message(q, "poison")
		sent.CorrelationID, sent.Operation = "corr-p", string(wire.OpCancel)
		require.NoError(t, bus.Publish(ctx, sent), "publish")
		m := receiveOne(t, bus, q)
		require.NoError(t, bus.DeadLetter(ctx, m, "InvalidEnvelope", "operation is missing"), "dead-letter")
		mustCode(t, bus.DeadLetter(ctx, m, "again", ""), domain.ECONFLICT, "second dead-letter")
		expectEmpty(t, bus, q)

		dead := receiveOne(t, bus, ports.DeadLetterQueue(q))
		require.Equal(t, []string{sent.ID, string(sent.Body), sent.CorrelationID, sent.Operation},
			[]string{dead.ID, string(dead.Body), dead.CorrelationID, dead.Operation}, "dead-lettered id, body, correlation, operation")
		require.Equal(t, "InvalidEnvelope", dead.DeadLetterReason, "dead-letter reason")
		require.Equal(t, "operation is missing", dead.DeadLetterDescription, "dead-letter description")

		// An operator replays it: publish a copy, then complete the
		// dead-lettered one. The copy needs a new id, or duplicate
		// detection would drop it within the window.
		replay := dead.Message
		replay.Queue, replay.ID = q, dead.ID+"-replay"
		require.NoError(t, bus.Publish(ctx, replay), "replay")
		require.NoError(t, bus.Complete(ctx, dead), "complete the dead-lettered copy")
		expectEmpty(t, bus, ports.DeadLetterQueue(q))
		again := receiveOne(t, bus, q)
		require.Equal(t, replay.ID, again.ID, "replayed")
		require.Equal(t, string(sent.Body), string(again.Body), "replayed body")
		require.Equal(t, 1, again.DeliveryCount, "the replay's delivery count")
		require.NoError(t, bus.Complete(ctx, again), "complete the replay")
	})

	t.Run("MaxDeliveryCountDeadLetters", func(t *testing.T) {
		const maxDeliveries = 3
		bus, q := setup(t, BusOptions{LockDuration: time.Minute, MaxDeliveryCount: maxDeliveries})
		ctx := ctxFor(t)
		sent := message(q, "unlucky")
		require.NoError(t, bus.Publish(ctx, sent), "publish")
		for i := 1; i <= maxDeliveries; i++ {
			m := receiveOne(t, bus, q)
			require.Equal(t, sent.ID, m.ID, "delivery %d", i)
			require.Equal(t, i, m.DeliveryCount, "delivery %d's count", i)
			require.NoError(t, bus.Abandon(ctx, m), "abandon")
		}
		expectEmpty(t, bus, q)
		dead := receiveOne(t, bus, ports.DeadLetterQueue(q))
		require.Equal(t, sent.ID, dead.ID, "dead-lettered")
		require.Equal(t, "MaxDeliveryCountExceeded", dead.DeadLetterReason, "dead-letter reason")
		require.NoError(t, bus.Complete(ctx, dead), "complete the dead-lettered message")
	})

	t.Run("LockExpiryRedelivers", func(t *testing.T) {
		bus, q := setup(t, BusOptions{LockDuration: shortDelay})
		ctx := ctxFor(t)
		require.NoError(t, bus.Publish(ctx, message(q, "slow")), "publish")
		start := time.Now()
		first := receiveOne(t, bus, q)
		second := receiveOne(t, bus, q) // blocks until the first lock expires
		require.GreaterOrEqual(t, time.Since(start), shortDelay, "redelivered before the lock expired")
		if second.ID != first.ID || second.DeliveryCount <= first.DeliveryCount || second.LockToken == first.LockToken {
			t.Fatalf("redelivered %s count %d token %q after %s count %d token %q",
				second.ID, second.DeliveryCount, second.LockToken, first.ID, first.DeliveryCount, first.LockToken)
		}
		mustCode(t, bus.Complete(ctx, first), domain.ECONFLICT, "complete with the expired lock")
		mustCode(t, bus.Abandon(ctx, first), domain.ECONFLICT, "abandon with the expired lock")
		require.NoError(t, bus.Complete(ctx, second), "complete with the current lock")
		expectEmpty(t, bus, q)
	})

	t.Run("ReceiveBlocksUntilPublish", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		type result struct {
			msgs []*ports.Delivered
			err  error
		}
		done := make(chan result, 1)
		go func() {
			msgs, err := bus.Receive(ctx, q, 10)
			done <- result{msgs, err}
		}()
		select {
		case r := <-done:
			t.Fatalf("receive from an empty queue returned %d messages, error %v", len(r.msgs), r.err)
		case <-time.After(shortDelay):
		}
		sent := message(q, "awaited")
		published := make(chan error, 1)
		go func() { published <- bus.Publish(ctx, sent) }()
		require.NoError(t, <-published, "publish")
		r := <-done
		require.NoError(t, r.err, "receive")
		require.Len(t, r.msgs, 1, "received")
		require.Equal(t, sent.ID, r.msgs[0].ID, "received")
		require.NoError(t, bus.Complete(ctx, r.msgs[0]), "complete")
	})

	t.Run("ReceiveReturnsOnCancel", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx, cancel := context.WithCancel(ctxFor(t))
		done := make(chan error, 1)
		go func() {
			msgs, err := bus.Receive(ctx, q, 10)
			if len(msgs) > 0 {
				err = fmt.Errorf("received %d messages from an empty queue", len(msgs))
			}
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("receive from an empty queue returned %v before it was cancelled", err)
		case <-time.After(shortDelay):
		}
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled, "receive after its context was cancelled")
		case <-time.After(patience):
			t.Fatal("receive did not return after its context was cancelled")
		}
	})

	t.Run("CompetingReceiversGetEachMessageOnce", func(t *testing.T) {
		bus, q := setup(t, BusOptions{})
		ctx := ctxFor(t)
		const total, receivers = 100, 4
		var batch []ports.Message
		for i := range total {
			batch = append(batch, message(q, fmt.Sprintf("m%03d", i)))
		}
		require.NoError(t, bus.Publish(ctx, batch...), "publish batch")

		rctx, stop := context.WithCancel(ctx)
		defer stop()
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			n    int
			wg   sync.WaitGroup
			errs = make(chan error, receivers)
		)
		for range receivers {
			wg.Go(func() {
				for {
					msgs, err := bus.Receive(rctx, q, 16)
					if rctx.Err() != nil {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					for _, m := range msgs {
						if err := bus.Complete(ctx, m); err != nil {
							errs <- err
							return
						}
						mu.Lock()
						seen[m.ID]++
						if n++; n == total {
							stop()
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err, "receiver")
		}
		require.NoError(t, ctx.Err(), "receiving the batch")
		for _, m := range batch {
			assert.Equal(t, 1, seen[m.ID], "%s received", m.ID)
		}
		assert.Len(t, seen, total, "distinct messages received")
		expectEmpty(t, bus, q)
	})
}

func message(queue, name string) ports.Message {
	id := unique(name)
	return ports.Message{ID: id, Queue: queue, Body: []byte(`{"name":"` + name + `","id":"` + id + `"}`)}
}

// receiveN receives exactly n messages in at most batch-sized receives.
func receiveN(t *testing.T, bus ports.Bus, queue string, n, batch int) []*ports.Delivered {
	t.Helper()
	ctx := ctxFor(t)
	var out []*ports.Delivered
	for len(out) < n {
		msgs, err := bus.Receive(ctx, queue, min(batch, n-len(out)))
		require.NoError(t, err, fmt.Sprintf("receive from %s after %d of %d messages", queue, len(out), n))
		require.NotEmpty(t, msgs, "receive with max %d", batch)
		require.LessOrEqual(t, len(msgs), batch, "receive with max %d", batch)
		out = append(out, msgs...)
	}
	require.Len(t, out, n, "received")
	return out
}

func receiveOne(t *testing.T, bus ports.Bus, queue string) *ports.Delivered {
	t.Helper()
	return receiveN(t, bus, queue, 1, 1)[0]
}

// expectEmpty checks that nothing becomes receivable for a short while.
func expectEmpty(t *testing.T, bus ports.Bus, queue string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), shortDelay)
	defer cancel()
	msgs, err := bus.Receive(ctx, queue, 10)
	if len(msgs) > 0 {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		slices.Sort(ids)
		t.Fatalf("%s should be empty but delivered %v", queue, ids)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded, "receive from empty %s", queue)
}

// BusCarriesVersions checks a bus that carries Message.Versions (the
// Service Bus and SQS adapters; the embedded bus drops them): a message's
// own versions arrive as sent, and one published under a ctx whose
// ports.Versions noted a document is stamped with them.
func BusCarriesVersions(t *testing.T, open func(t *testing.T, o BusOptions) ports.Bus) {
	t.Parallel()
	bus, q := open(t, BusOptions{}), unique("q")
	ctx := ctxFor(t)
	own := message(q, "own")
	own.Versions = `{"deliveries/d-1":"\"etag-1\""}`
	require.NoError(t, bus.Publish(ctx, own), "publish")
	noted, _ := ports.WithVersions(ctx, "")
	ports.NoteVersion(noted, "drones", "dr-1", `"etag-2"`)
	stamped := message(q, "stamped")
	require.NoError(t, bus.Publish(noted, stamped), "publish with noted versions")
	none := message(q, "none")
	require.NoError(t, bus.Publish(ctx, none), "publish without")

	byID := map[string]string{}
	for _, m := range receiveN(t, bus, q, 3, 10) {
		byID[m.ID] = m.Versions
		require.NoError(t, bus.Complete(ctx, m), "complete")
	}
	require.Equal(t, map[string]string{
		own.ID:     own.Versions,
		stamped.ID: `{"drones/dr-1":"\"etag-2\""}`,
		none.ID:    "",
	}, byID, "versions received")
}
