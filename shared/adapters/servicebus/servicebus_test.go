package servicebus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/wire"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// patience bounds waits for things that should happen promptly: only a
// hang reaches it.
const patience = time.Minute

// open connects a Bus to a namespace of the double; both close when tb ends.
func open(tb testing.TB, conn string, opts Options) (*Bus, *azservicebus.Client) {
	tb.Helper()
	client, err := azservicebus.NewClientFromConnectionString(conn, ClientOptions())
	require.NoError(tb, err, "client")
	bus := New(client, opts)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		assert.NoError(tb, bus.Close(ctx), "close bus")
		if err := client.Close(ctx); err != nil {
			tb.Errorf("close client: %v", err)
		}
	})
	return bus, client
}

// TestBus runs the contract every bus must pass. The suite makes its queue
// names up as it goes, so each option set gets a namespace of the double
// whose queues are created on first use with those properties, as Azure
// infrastructure would create them. Renewal is off: the suite's lock expiry
// case stands for a consumer that died, which could not renew either.
func TestBus(t *testing.T) {
	t.Parallel()
	sb := servicebusdouble.StartServiceBus(t)
	var (
		mu     sync.Mutex
		buses  = map[porttest.BusOptions]*Bus{}
		parent = t
	)
	porttest.Bus(t, func(t *testing.T, o porttest.BusOptions) ports.Bus {
		mu.Lock()
		defer mu.Unlock()
		if bus := buses[o]; bus != nil {
			return bus
		}
		conn := sb.Namespace(t, servicebusdouble.QueueProperties{LockDuration: o.LockDuration, MaxDeliveryCount: o.MaxDeliveryCount})
		// The bus outlives this subtest: others with the same options share it.
		bus, _ := open(parent, conn, Options{MaxLockRenewal: -1})
		buses[o] = bus
		return bus
	})
}

func TestBusCarriesVersions(t *testing.T) {
	sb := servicebusdouble.StartServiceBus(t)
	porttest.BusCarriesVersions(t, func(t *testing.T, o porttest.BusOptions) ports.Bus {
		bus, _ := open(t, sb.Namespace(t, servicebusdouble.QueueProperties{}), Options{MaxLockRenewal: -1})
		return bus
	})
}

// startBus starts a double of t's own and opens a Bus on it; q is t's
// queue.
func startBus(t *testing.T) (sb *servicebusdouble.ServiceBus, q string, bus *Bus, client *azservicebus.Client) {
	t.Helper()
	sb = servicebusdouble.StartServiceBus(t)
	bus, client = open(t, sb.ConnectionString(), Options{})
	return sb, testQueue(t), bus, client
}

func testQueue(t *testing.T) string {
	return strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}

func receiveOne(t *testing.T, bus ports.Bus, queue string) *ports.Delivered {
	t.Helper()
	msgs, err := bus.Receive(ctxFor(t), queue, 1)
	require.NoError(t, err, "receive from %s", queue)
	require.Len(t, msgs, 1, "receive from %s", queue)
	return msgs[0]
}

// expectNothing checks that nothing is receivable from queue for d.
func expectNothing(t *testing.T, bus ports.Bus, queue string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	msgs, err := bus.Receive(ctx, queue, 10)
	require.Empty(t, msgs, "%s delivered while it should have had nothing", queue)
	require.ErrorIs(t, err, context.DeadlineExceeded, "receive from %s", queue)
}

// requireNotEarly fails unless the message id, scheduled for due, is
// received at or after that time. AMQP carries the time in whole
// milliseconds, cut down, and the double schedules by Node timers, which
// can fire a millisecond early, so a few milliseconds before due still
// count as on time; a message delivered at once, ignoring its schedule, is
// hundreds of milliseconds early and fails.
func requireNotEarly(t *testing.T, id string, due time.Time) {
	t.Helper()
	const timerSlack = 5 * time.Millisecond
	now := time.Now()
	require.False(t, now.Before(due.Truncate(time.Millisecond).Add(-timerSlack)), "received %s at %v, before its time %v", id, now, due)
}

func TestPublishSplitsBatchesAtTheSizeLimit(t *testing.T) {
	t.Parallel()
	sb := servicebusdouble.StartServiceBus(t)
	q := testQueue(t)
	sb.CreateQueue(t, q, 0, 0)
	bus, _ := open(t, sb.ConnectionString(), Options{})
	ctx := ctxFor(t)

	// 120 messages of 6 KB are about 720 KB: beyond one batch of the
	// double's 256 KB link limit, which it enforces.
	const n = 120
	pad := strings.Repeat("x", 6000)
	var msgs []ports.Message
	for i := range n {
		msgs = append(msgs, ports.Message{ID: fmt.Sprintf("m%03d", i), Queue: q, Body: []byte(`{"pad":"` + pad + `"}`)})
	}
	require.NoError(t, bus.Publish(ctx, msgs...), "publish")
	st := sb.Stats(t, q)
	require.Equal(t, n, st.Active, "messages the double holds")
	require.True(t, st.Transfers >= 3 && st.Transfers <= 6, "the double got %d transfers, want 3 to 6 batches", st.Transfers)
	// The batches kept the publish order: sequence numbers follow it. (The
	// order of receipt may differ a little: messages that arrive between two
	// receives are released by the SDK and come back after later ones.)
	bySeq := map[int64]string{}
	for len(bySeq) < n {
		batch, err := bus.Receive(ctx, q, 50)
		require.NoError(t, err, "receive after %d", len(bySeq))
		for _, m := range batch {
			bySeq[m.SequenceNumber] = m.ID
			require.NoError(t, bus.Complete(ctx, m), "complete %s", m.ID)
		}
	}
	seqs := slices.Sorted(maps.Keys(bySeq))
	for i, seq := range seqs {
		require.Equal(t, fmt.Sprintf("m%03d", i), bySeq[seq], "sequence number %d", seq)
	}
	expectNothing(t, bus, q, 300*time.Millisecond)
}

func TestOversizedMessageIsInvalid(t *testing.T) {
	t.Parallel()
	_, q, bus, _ := startBus(t)
	huge := ports.Message{ID: "huge", Queue: q, Body: []byte(`"` + strings.Repeat("x", 300*1024) + `"`)}
	err := bus.Publish(ctxFor(t), huge)
	require.Equal(t, domain.EINVALID, domain.ErrorCode(err), "publish of a 300 KB message: %v", err)
}

// TestPropertiesRoundTrip checks the wire shape other Service Bus clients
// see, in both directions, with a bare azservicebus client on the far end.
func TestPropertiesRoundTrip(t *testing.T) {
	t.Parallel()
	_, q, bus, client := startBus(t)
	ctx := ctxFor(t)

	sent := ports.Message{ID: "d1-schedule", Queue: q, Body: []byte(`{"operation":"delivery"}`), CorrelationID: "corr-1", Operation: string(wire.OpDelivery)}
	require.NoError(t, bus.Publish(ctx, sent), "publish")
	raw, err := client.NewReceiverForQueue(q, nil)
	require.NoError(t, err)
	defer raw.Close(context.Background())
	got, err := raw.ReceiveMessages(ctx, 1, nil)
	require.NoError(t, err, "raw receive")
	require.Len(t, got, 1, "raw receive")
	m := got[0]
	if m.MessageID != sent.ID || deref(m.CorrelationID) != sent.CorrelationID || deref(m.ContentType) != "application/json" ||
		m.ApplicationProperties[OperationProperty] != sent.Operation || string(m.Body) != string(sent.Body) {
		t.Fatalf("raw client saw id %q, correlation %q, content type %q, properties %v, body %s",
			m.MessageID, deref(m.CorrelationID), deref(m.ContentType), m.ApplicationProperties, m.Body)
	}
	require.NoError(t, raw.CompleteMessage(ctx, m, nil), "raw complete")

	// The other way: another producer's message, with properties of
	// several AMQP types, reaches the port intact.
	rawSender, err := client.NewSender(q, nil)
	require.NoError(t, err)
	defer rawSender.Close(context.Background())
	id, corr, ct := "d2-schedule", "corr-2", "application/json"
	err = rawSender.SendMessage(ctx, &azservicebus.Message{
		MessageID: &id, CorrelationID: &corr, ContentType: &ct, Body: []byte(`{}`),
		ApplicationProperties: map[string]any{OperationProperty: string(wire.OpCancel), "attempt": int64(3), "urgent": true},
	}, nil)
	require.NoError(t, err, "raw send")
	d := receiveOne(t, bus, q)
	require.Equal(t, []string{id, corr, string(wire.OpCancel), q}, []string{d.ID, d.CorrelationID, d.Operation, d.Queue}, "the port saw id, correlation, operation, queue")
	require.NoError(t, bus.Abandon(ctx, d), "abandon")
	again, err := raw.ReceiveMessages(ctx, 1, nil)
	require.NoError(t, err, "raw receive")
	require.Len(t, again, 1, "raw receive")
	p := again[0].ApplicationProperties
	require.Equal(t, int64(3), p["attempt"], "after an abandon the raw client saw properties %v", p)
	require.Equal(t, true, p["urgent"], "after an abandon the raw client saw properties %v", p)
	require.EqualValues(t, 2, again[0].DeliveryCount, "the delivery count after an abandon")
	require.NoError(t, raw.CompleteMessage(ctx, again[0], nil), "raw complete")
}

// lockedQueue makes a queue whose messages lock for lock, opens a worker
// and a rival bus on it with their options, and publishes message id
// through the worker. Renewal comes at half the lock's remaining time: a
// long lock leaves it seconds to spare on a busy machine.
func lockedQueue(t *testing.T, lock time.Duration, id string, worker, rival Options) (*servicebusdouble.ServiceBus, string, *Bus, *Bus) {
	t.Helper()
	sb := servicebusdouble.StartServiceBus(t)
	q := testQueue(t)
	sb.CreateQueue(t, q, lock, 0)
	w, _ := open(t, sb.ConnectionString(), worker)
	r, _ := open(t, sb.ConnectionString(), rival)
	require.NoError(t, w.Publish(ctxFor(t), ports.Message{ID: id, Queue: q, Body: []byte(`{}`)}), "publish")
	return sb, q, w, r
}

func TestLockRenewalKeepsUnsettledMessageLocked(t *testing.T) {
	t.Parallel()
	// Each renewal may come up to half the lock late: seven seconds and a
	// half for a machine under load, where a few seconds' lock lost the
	// message to the rival.
	const lock = 15 * time.Second
	sb, q, worker, rival := lockedQueue(t, lock, "slow", Options{}, Options{})
	ctx := ctxFor(t)

	m := receiveOne(t, worker, q)
	// Long work: two lock durations pass without a settlement.
	expectNothing(t, rival, q, 2*lock)
	require.Equal(t, 1, sb.Stats(t, q).Locked, "locked messages after two lock durations")
	require.NoError(t, worker.Complete(ctx, m), "complete after long work")
	// The double settles before it answers the completion: the message is
	// gone, not waiting for a rival once a lock runs out.
	st := sb.Stats(t, q)
	require.Equal(t, 0, st.Active+st.Locked, "messages the double holds after the completion: %+v", st)
}

func TestLockRenewalEndsAtMaxLockRenewal(t *testing.T) {
	t.Parallel()
	// As above, a lock long enough for a late renewal to keep it. With
	// renewals at half the time left, the last before the budget of two
	// locks runs out comes a lock and a half in, so the rival gets the
	// message about two and a half locks in, well within patience.
	const lock = 15 * time.Second
	_, q, worker, rival := lockedQueue(t, lock, "stuck", Options{MaxLockRenewal: 2 * lock}, Options{MaxLockRenewal: -1})
	ctx := ctxFor(t)

	start := time.Now()
	first := receiveOne(t, worker, q)
	second := receiveOne(t, rival, q) // blocks until the renewed lock runs out
	require.GreaterOrEqual(t, time.Since(start), 2*lock, "redelivered before the renewal budget was spent")
	require.Equal(t, first.ID, second.ID, "redelivered")
	require.EqualValues(t, 2, second.DeliveryCount, "redelivered %s", second.ID)
	err := worker.Complete(ctx, first)
	require.Equal(t, domain.ECONFLICT, domain.ErrorCode(err), "complete with the expired lock: %v", err)
	require.NoError(t, rival.Complete(ctx, second), "complete")
}

func TestScheduledMessageWaitsForItsTime(t *testing.T) {
	t.Parallel()
	sb, q, bus, _ := startBus(t)
	ctx := ctxFor(t)

	// An hour off, so that it is still scheduled when the double is asked,
	// however slow the machine.
	distant := ports.Message{ID: "retry-9", Queue: q, Body: []byte(`{}`), NotBefore: time.Now().Add(time.Hour).Truncate(time.Millisecond)}
	now1 := ports.Message{ID: "now-1", Queue: q, Body: []byte(`{}`)}
	now2 := ports.Message{ID: "now-2", Queue: q, Body: []byte(`{}`)}
	require.NoError(t, bus.Publish(ctx, now1, distant, now2), "publish")
	// The two due messages travel as one batch, the scheduled one alone.
	if st := sb.Stats(t, q); st.Scheduled != 1 || st.Active != 2 || st.Transfers != 2 {
		t.Fatalf("the double holds %+v; want 1 scheduled and 2 active in 2 transfers", st)
	}
	for _, want := range []string{now1.ID, now2.ID} {
		m := receiveOne(t, bus, q)
		require.Equal(t, want, m.ID, "received")
		require.NoError(t, bus.Complete(ctx, m), "complete")
	}

	// A message due soon comes at its time, not before: the receive starts
	// at once and the message must not be in hand before its time. (A
	// window of "nothing yet" would not do: a receive called off just before
	// the time can still hand over a message that arrives while the client
	// winds the link down.)
	const delay = 1500 * time.Millisecond
	later := ports.Message{ID: "retry-1", Queue: q, Body: []byte(`{}`), NotBefore: time.Now().Add(delay).Truncate(time.Millisecond)}
	require.NoError(t, bus.Publish(ctx, later), "publish")
	m := receiveOne(t, bus, q)
	require.Equal(t, later.ID, m.ID, "received")
	requireNotEarly(t, m.ID, later.NotBefore)
	require.True(t, m.NotBefore.Equal(later.NotBefore), "NotBefore came back as %v, want %v", m.NotBefore, later.NotBefore)
	require.NoError(t, bus.Complete(ctx, m), "complete")
}

func TestClosedBusIsUnavailable(t *testing.T) {
	t.Parallel()
	_, q, bus, _ := startBus(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "m", Queue: q, Body: []byte(`{}`)}), "publish")
	m := receiveOne(t, bus, q)
	require.NoError(t, bus.Close(ctx), "close")
	err := bus.Publish(ctx, ports.Message{ID: "n", Queue: q})
	require.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "publish after close: %v", err)
	_, err = bus.Receive(ctx, q, 1)
	require.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "receive after close: %v", err)
	err = bus.Complete(ctx, m)
	require.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "complete after close: %v", err)
}

// TestSettleByLockTokenFromAnotherBus settles messages that a different Bus
// received: without the message's link, settlement goes by lock token over
// the management link, and the broker alone decides.
func TestSettleByLockTokenFromAnotherBus(t *testing.T) {
	t.Parallel()
	sb := servicebusdouble.StartServiceBus(t)
	q := testQueue(t)
	sb.CreateQueue(t, q, time.Minute, 0)
	first, _ := open(t, sb.ConnectionString(), Options{})
	second, _ := open(t, sb.ConnectionString(), Options{})
	ctx := ctxFor(t)

	var msgs []ports.Message
	for _, id := range []string{"to-complete", "to-abandon", "to-dead-letter"} {
		msgs = append(msgs, ports.Message{ID: id, Queue: q, Body: []byte(`{}`)})
	}
	require.NoError(t, first.Publish(ctx, msgs...), "publish")
	got, err := first.Receive(ctx, q, 3)
	for len(got) < 3 && err == nil {
		var more []*ports.Delivered
		more, err = first.Receive(ctx, q, 3-len(got))
		got = append(got, more...)
	}
	require.NoError(t, err, "receive")
	byID := map[string]*ports.Delivered{}
	for _, m := range got {
		byID[m.ID] = m
	}
	require.NoError(t, second.Complete(ctx, byID["to-complete"]), "complete from another bus")
	require.NoError(t, second.Abandon(ctx, byID["to-abandon"]), "abandon from another bus")
	require.NoError(t, second.DeadLetter(ctx, byID["to-dead-letter"], "Replayed", "by an operator"), "dead-letter from another bus")
	// The first bus still holds them, but the broker has settled them.
	err = first.Complete(ctx, byID["to-complete"])
	require.Equal(t, domain.ECONFLICT, domain.ErrorCode(err), "complete on the receiving bus after the other settled it: %v", err)
	again := receiveOne(t, second, q)
	require.Equal(t, "to-abandon", again.ID, "redelivered")
	require.EqualValues(t, 2, again.DeliveryCount, "redelivered %s", again.ID)
	require.NoError(t, second.Complete(ctx, again), "complete")
	dead := receiveOne(t, second, ports.DeadLetterQueue(q))
	require.Equal(t, []string{"to-dead-letter", "Replayed", "by an operator"}, []string{dead.ID, dead.DeadLetterReason, dead.DeadLetterDescription}, "dead-lettered id, reason, description")
	require.NoError(t, second.Complete(ctx, dead), "complete the dead-lettered message")
}

func TestDuplicateDetectionForgetsAfterItsWindow(t *testing.T) {
	t.Parallel()
	sb := servicebusdouble.StartServiceBus(t)
	q := testQueue(t)
	const window = time.Second
	sb.CreateQueueWith(t, q, servicebusdouble.QueueProperties{DuplicateDetectionWindow: window})
	bus, _ := open(t, sb.ConnectionString(), Options{})
	ctx := ctxFor(t)

	// A duplicate is dropped when it comes within the window. Whether it did
	// is measured, not assumed: on a machine too busy to send it in time the
	// pair is tried again under a fresh id.
	var m ports.Message
	var sent time.Time // the id's window began before this
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatalf("not once were two publishes less than %s apart", window)
		}
		m = ports.Message{ID: fmt.Sprintf("d%d-schedule", try), Queue: q, Body: []byte(`{}`)}
		before := sb.Stats(t, q).Active
		start := time.Now()
		require.NoError(t, bus.Publish(ctx, m), "publish")
		sent = time.Now()
		require.NoError(t, bus.Publish(ctx, m), "publish")
		if time.Since(start) >= window {
			continue
		}
		require.Equal(t, before+1, sb.Stats(t, q).Active, "messages after a duplicate within the window")
		break
	}
	active := sb.Stats(t, q).Active

	// The window is a span of the clock: wait for the clock, then the same
	// id is new again.
	for d := time.Until(sent.Add(window)); d >= 0; d = time.Until(sent.Add(window)) {
		time.Sleep(d + time.Millisecond)
	}
	require.NoError(t, bus.Publish(ctx, m), "publish")
	require.Equal(t, active+1, sb.Stats(t, q).Active, "messages after the window passed")
}

// TestScheduleMessageOperation covers the management-link way of
// scheduling, which other clients use; the adapter sets the annotation.
func TestScheduleMessageOperation(t *testing.T) {
	t.Parallel()
	sb, q, bus, client := startBus(t)
	ctx := ctxFor(t)

	sender, err := client.NewSender(q, nil)
	require.NoError(t, err)
	defer sender.Close(context.Background())
	cancelled, kept := "cancelled", "kept"
	seqs, err := sender.ScheduleMessages(ctx, []*azservicebus.Message{{MessageID: &cancelled, Body: []byte(`{}`)}}, time.Now().Add(time.Hour), nil)
	require.NoError(t, err, "schedule")
	require.Len(t, seqs, 1, "sequence numbers")
	require.NoError(t, sender.CancelScheduledMessages(ctx, seqs, nil), "cancel")
	at := time.Now().Add(500 * time.Millisecond)
	_, err = sender.ScheduleMessages(ctx, []*azservicebus.Message{{MessageID: &kept, Body: []byte(`{}`)}}, at, nil)
	require.NoError(t, err, "schedule")
	// The cancelled one is gone; the kept one is there, still scheduled or,
	// on a slow machine, already due.
	st := sb.Stats(t, q)
	require.Equal(t, 1, st.Scheduled+st.Active, "messages the double holds after one cancel and one schedule: %+v", st)
	m := receiveOne(t, bus, q)
	require.Equal(t, kept, m.ID, "received")
	requireNotEarly(t, m.ID, at)
	require.NoError(t, bus.Complete(ctx, m), "complete")
}

// BenchmarkPublish measures sequential single-message publishes through
// the double; it is for judging the double, not Service Bus.
func BenchmarkPublish(b *testing.B) {
	sb := servicebusdouble.StartServiceBus(b)
	bus, _ := open(b, sb.ConnectionString(), Options{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := bus.Publish(ctx, ports.Message{ID: fmt.Sprint(i), Queue: "bench", Body: []byte(`{"n":1}`)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkReceiveComplete measures one-at-a-time receive and complete.
func BenchmarkReceiveComplete(b *testing.B) {
	sb := servicebusdouble.StartServiceBus(b)
	bus, _ := open(b, sb.ConnectionString(), Options{})
	ctx := context.Background()
	msgs := make([]ports.Message, b.N)
	for i := range msgs {
		msgs[i] = ports.Message{ID: fmt.Sprint(i), Queue: "bench", Body: []byte(`{"n":1}`)}
	}
	if err := bus.Publish(ctx, msgs...); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := bus.Receive(ctx, "bench", 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := bus.Complete(ctx, got[0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
