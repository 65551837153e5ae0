package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// ReasonMaxDeliveryCountExceeded is the dead-letter reason of a message that
// was delivered MaxDeliveryCount times without being completed; Service Bus
// uses the same words.
const ReasonMaxDeliveryCountExceeded = "MaxDeliveryCountExceeded"

// maxBatch caps one Receive so that one transaction cannot hold the write
// lock for long.
const maxBatch = 1000

// pruneBatch bounds how many expired message ids one publish deletes.
const pruneBatch = 2000

// dlqSuffix ends every dead-letter queue's name.
var dlqSuffix = ports.DeadLetterQueue("")

func isDLQ(queue string) bool { return strings.HasSuffix(queue, dlqSuffix) }

// Bus is a durable peek-lock queue in the DB's file that behaves like the
// parts of Service Bus the functions use: duplicate detection, scheduled
// messages, lock expiry, delivery counts and dead-lettering.
//
// A message row is visible when its visible_at has passed; receiving it
// moves visible_at to the lock's expiry, so an expired lock needs no sweeper
// to make the message receivable again.
type Bus struct {
	db *DB

	mu   sync.Mutex
	wake map[string]chan struct{} // closed when the queue may have news

	lastPrune atomic.Int64 // unix ns of the last purge of expired message ids
}

var _ ports.Bus = (*Bus)(nil)

func newBus(db *DB) *Bus {
	b := &Bus{db: db, wake: make(map[string]chan struct{})}
	b.lastPrune.Store(time.Now().UnixNano())
	return b
}

// waiter returns a channel that is closed at the queue's next news; taking
// it before looking at the queue means no news can slip in between.
func (b *Bus) waiter(queue string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.wake[queue]
	if ch == nil {
		ch = make(chan struct{})
		b.wake[queue] = ch
	}
	return ch
}

// signal wakes the receivers of queue in this process.
func (b *Bus) signal(queue string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch := b.wake[queue]; ch != nil {
		close(ch)
		delete(b.wake, queue)
	}
}

// Publish implements ports.Publisher: all messages go in one transaction, so
// a batch costs one commit. Each message carries the trace context of the
// span ctx carries (tracing.Inject).
func (b *Bus) Publish(ctx context.Context, msgs ...ports.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	tracing.Inject(ctx, msgs)
	queues, err := publishQueues(msgs)
	if err != nil {
		return err
	}
	if err := b.db.commit.write(ctx, "publish", func(w *writeTx) error { return b.insert(w, msgs) }); err != nil {
		return err
	}
	for _, q := range queues {
		b.signal(q)
	}
	return nil
}

// publishQueues checks that every message names a queue one may publish to
// and returns those queues.
func publishQueues(msgs []ports.Message) ([]string, error) {
	var queues []string
	for i := range msgs {
		q := msgs[i].Queue
		if q == "" || isDLQ(q) {
			return nil, domain.Invalid("queue", "cannot publish to %q", q)
		}
		if !slices.Contains(queues, q) {
			queues = append(queues, q)
		}
	}
	return queues, nil
}

// insert enqueues msgs inside a write, dropping those whose id the queue
// has seen within the duplicate-detection window.
func (b *Bus) insert(w *writeTx, msgs []ports.Message) error {
	now := time.Now().UnixNano()
	expires := now + int64(b.db.opts.DuplicateWindow)
	dedupe, insert := w.stmt(b.db.st.msgDedupe), w.stmt(b.db.st.msgInsert)
	for i := range msgs {
		m := &msgs[i]
		id := m.ID
		if id == "" {
			id = platform.IDs{}.NewID()
		}
		res, err := dedupe.Exec(m.Queue, id, expires, now)
		if err != nil {
			return fmt.Errorf("publish %s to %s: %w", id, m.Queue, err)
		}
		if affected(res, nil) == 0 {
			continue // a duplicate
		}
		visible, notBefore := now, int64(0)
		if !m.NotBefore.IsZero() {
			notBefore = m.NotBefore.UnixNano()
			visible = max(now, notBefore)
		}
		if _, err := insert.Exec(m.Queue, id, m.Body, m.CorrelationID, m.Operation, notBefore, now, visible, m.TraceParent, m.TraceState); err != nil {
			return fmt.Errorf("publish %s to %s: %w", id, m.Queue, err)
		}
	}
	return b.prune(w, now)
}

// prune forgets expired message ids now and then, inside a publish that
// holds the write lock anyway, so the table stays about one window's worth
// of ids without a background goroutine. Each pass deletes at most
// pruneBatch rows so no publish stalls the writer; a full pass makes the
// next publish prune again, which lets pruning keep up with any rate.
func (b *Bus) prune(w *writeTx, now int64) error {
	every := min(int64(b.db.opts.DuplicateWindow)/10, int64(time.Second))
	last := b.lastPrune.Load()
	if now-last < every || !b.lastPrune.CompareAndSwap(last, now) {
		return nil
	}
	res, err := w.stmt(b.db.st.msgPrune).Exec(now, pruneBatch)
	if err != nil {
		return fmt.Errorf("prune message ids: %w", err)
	}
	if affected(res, nil) == pruneBatch {
		b.lastPrune.Store(0)
	}
	return nil
}

// Receive implements ports.Consumer. It wakes at once for a publish or an
// abandon in this process and otherwise looks again every PollInterval, or
// when the earliest delayed or locked message becomes visible if that is
// sooner, so that publishes from other processes and expired locks are seen.
func (b *Bus) Receive(ctx context.Context, queue string, n int) ([]*ports.Delivered, error) {
	n = min(max(n, 1), maxBatch)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wake := b.waiter(queue)
		next, ok, err := b.next(ctx, queue)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		if ok && !next.After(now) {
			got, err := b.lock(ctx, queue, n)
			if err != nil || len(got) > 0 {
				return got, err
			}
			continue // another receiver was quicker; look again
		}
		wait := b.db.opts.PollInterval
		if ok {
			wait = min(wait, next.Sub(now))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-b.db.done:
			t.Stop()
			return nil, domain.Unavailable(ErrClosed, "receive from %s", queue)
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// next reads when the queue's earliest message becomes visible, on the
// read pool so that idle receivers never take the write lock.
func (b *Bus) next(ctx context.Context, queue string) (time.Time, bool, error) {
	var ns int64
	err := b.db.st.msgNext.QueryRowContext(ctx, queue).Scan(&ns)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}, false, ctx.Err()
		}
		return time.Time{}, false, b.db.fail(err, "receive from %s", queue)
	}
	return time.Unix(0, ns), true, nil
}

// maxDeliveries is the delivery count past which a message of queue is
// dead-lettered.
func (b *Bus) maxDeliveries(queue string) int64 {
	if isDLQ(queue) {
		return math.MaxInt64 // a dead-letter queue has no dead-letter queue
	}
	return int64(b.db.opts.MaxDeliveryCount)
}

// lock takes up to n visible messages in one write, first moving to the
// dead-letter queue any that would exceed MaxDeliveryCount.
func (b *Bus) lock(ctx context.Context, queue string, n int) ([]*ports.Delivered, error) {
	maxCount := b.maxDeliveries(queue)
	var out []*ports.Delivered
	var expired bool
	err := b.db.commit.write(ctx, "receive from "+queue, func(w *writeTx) error {
		var err error
		out, expired, err = b.lockIn(w, queue, n, maxCount)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if expired {
		b.signal(ports.DeadLetterQueue(queue))
	}
	return out, nil
}

func (b *Bus) lockIn(w *writeTx, queue string, n int, maxCount int64) ([]*ports.Delivered, bool, error) {
	now := time.Now()
	lockedUntil := now.Add(b.db.opts.LockDuration)
	var out []*ports.Delivered
	expired := false
	for len(out) == 0 {
		rows, err := w.stmt(b.db.st.msgPick).Query(queue, now.UnixNano(), n)
		if err != nil {
			return nil, false, err
		}
		var order, take, exceeded []int64
		for rows.Next() {
			var seq, count int64
			if err := rows.Scan(&seq, &count); err != nil {
				rows.Close()
				return nil, false, err
			}
			order = append(order, seq)
			if count >= maxCount {
				exceeded = append(exceeded, seq)
			} else {
				take = append(take, seq)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, err
		}
		if len(order) == 0 {
			break
		}
		if len(exceeded) > 0 {
			expired = true
			if _, err := w.stmt(b.db.st.msgExpire).Exec(ports.DeadLetterQueue(queue),
				ReasonMaxDeliveryCountExceeded, exceededDescription(maxCount), now.UnixNano(), seqList(exceeded)); err != nil {
				return nil, false, err
			}
		}
		if len(take) == 0 {
			continue
		}
		rows, err = w.stmt(b.db.st.msgLock).Query(lockedUntil.UnixNano(), seqList(take))
		if err != nil {
			return nil, false, err
		}
		for rows.Next() {
			d, err := scanLocked(rows, queue, lockedUntil)
			if err != nil {
				rows.Close()
				return nil, false, err
			}
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, err
		}
		// RETURNING comes in no promised order.
		pos := make(map[int64]int, len(order))
		for i, seq := range order {
			pos[seq] = i
		}
		slices.SortFunc(out, func(a, b *ports.Delivered) int { return pos[a.SequenceNumber] - pos[b.SequenceNumber] })
	}
	return out, expired, nil
}

// scanLocked reads a message of queue that the msgLock statement locked
// until lockedUntil.
func scanLocked(row interface{ Scan(...any) error }, queue string, lockedUntil time.Time) (*ports.Delivered, error) {
	d := &ports.Delivered{LockedUntil: lockedUntil.UTC()}
	d.Queue = queue
	var notBefore, enqueued int64
	if err := row.Scan(&d.SequenceNumber, &d.ID, &d.Body, &d.CorrelationID, &d.Operation,
		&notBefore, &enqueued, &d.DeliveryCount, &d.LockToken, &d.DeadLetterReason, &d.DeadLetterDescription,
		&d.TraceParent, &d.TraceState); err != nil {
		return nil, err
	}
	d.NotBefore, d.EnqueuedAt = fromNanos(notBefore), fromNanos(enqueued)
	return d, nil
}

// exceededDescription words the dead-letter description as Service Bus does.
func exceededDescription(maxCount int64) string {
	return fmt.Sprintf("Message could not be consumed after %d delivery attempts.", maxCount)
}

// seqList encodes sequence numbers as a JSON array, so one prepared
// statement can address any number of them through json_each.
func seqList(seqs []int64) string {
	buf := make([]byte, 0, 2+len(seqs)*8)
	buf = append(buf, '[')
	for i, s := range seqs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, s, 10)
	}
	return string(append(buf, ']'))
}

// Complete implements ports.Consumer.
func (b *Bus) Complete(ctx context.Context, m *ports.Delivered) error {
	return b.CompleteWith(ctx, m)
}

// CompleteWith publishes a step's outputs and completes the message that
// produced them in one write. Done apart, as ports.Consumer has it, they
// are two commits and a crash between them runs the step again; together
// they cost one and leave no such window. The outputs are published even
// when the message's lock turns out to be lost, as a Publish before the
// Complete would have been: the redelivered step's outputs are then
// duplicates, which the queue drops.
func (b *Bus) CompleteWith(ctx context.Context, m *ports.Delivered, out ...ports.Message) error {
	if err := checkDelivered(m); err != nil {
		return err
	}
	queues, err := publishQueues(out)
	if err != nil {
		return err
	}
	tracing.Inject(ctx, out)
	var n int64
	err = b.db.commit.write(ctx, "complete "+m.ID+" on "+m.Queue, func(w *writeTx) error {
		if len(out) > 0 {
			if err := b.insert(w, out); err != nil {
				return err
			}
		}
		res, err := w.stmt(b.db.st.msgComplete).Exec(m.SequenceNumber, m.Queue, m.LockToken, time.Now().UnixNano())
		n = affected(res, err)
		return err
	})
	if err != nil {
		return err
	}
	for _, q := range queues {
		b.signal(q)
	}
	if n == 0 {
		return lockLost("complete", m)
	}
	return nil
}

// Abandon implements ports.Consumer. An abandon that uses up the message's
// last delivery dead-letters it at once, as Service Bus does.
func (b *Bus) Abandon(ctx context.Context, m *ports.Delivered) error {
	if err := checkDelivered(m); err != nil {
		return err
	}
	maxCount := b.maxDeliveries(m.Queue)
	var queue string
	err := b.db.commit.write(ctx, "abandon "+m.ID+" on "+m.Queue, func(w *writeTx) error {
		queue = ""
		err := w.stmt(b.db.st.msgAbandon).QueryRow(m.SequenceNumber, m.Queue, m.LockToken, time.Now().UnixNano(),
			maxCount, ports.DeadLetterQueue(m.Queue), ReasonMaxDeliveryCountExceeded, exceededDescription(maxCount)).Scan(&queue)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if queue == "" {
		return lockLost("abandon", m)
	}
	b.signal(queue)
	return nil
}

// Browse implements ports.Browser: up to n of queue's messages, oldest
// first, read without a lock and without counting a delivery, as Service
// Bus's peek reads them.
func (b *Bus) Browse(ctx context.Context, queue string, n int) ([]*ports.Delivered, error) {
	rows, err := b.db.st.msgBrowse.QueryContext(ctx, queue, min(max(n, 1), maxBatch))
	if err != nil {
		return nil, b.db.fail(err, "browse %s", queue)
	}
	defer rows.Close()
	var out []*ports.Delivered
	for rows.Next() {
		d := &ports.Delivered{}
		d.Queue = queue
		var notBefore, enqueued int64
		if err := rows.Scan(&d.SequenceNumber, &d.ID, &d.Body, &d.CorrelationID, &d.Operation, &notBefore, &enqueued,
			&d.DeliveryCount, &d.DeadLetterReason, &d.DeadLetterDescription, &d.TraceParent, &d.TraceState); err != nil {
			return nil, b.db.fail(err, "browse %s", queue)
		}
		d.NotBefore, d.EnqueuedAt = fromNanos(notBefore), fromNanos(enqueued)
		out = append(out, d)
	}
	return out, b.db.fail(rows.Err(), "browse %s", queue)
}

var _ ports.Browser = (*Bus)(nil)

// Take implements ports.Taker: queue's visible message id, locked and
// counted as a delivery; ENOTFOUND when there is none.
func (b *Bus) Take(ctx context.Context, queue, id string) (*ports.Delivered, error) {
	lockedUntil := time.Now().Add(b.db.opts.LockDuration)
	var out *ports.Delivered
	err := b.db.commit.write(ctx, "take "+id+" from "+queue, func(w *writeTx) error {
		var seq int64
		err := w.stmt(b.db.st.msgPickID).QueryRow(queue, id, time.Now().UnixNano()).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return domain.Errorf(domain.ENOTFOUND, "no message %s in %s", id, queue)
		}
		if err != nil {
			return err
		}
		out, err = scanLocked(w.stmt(b.db.st.msgLock).QueryRow(lockedUntil.UnixNano(), seqList([]int64{seq})), queue, lockedUntil)
		return err
	})
	if err != nil {
		if domain.IsCode(err, domain.ENOTFOUND) {
			return nil, err
		}
		return nil, b.db.fail(err, "take %s from %s", id, queue)
	}
	return out, nil
}

var _ ports.Taker = (*Bus)(nil)

// DeadLetter implements ports.Consumer.
func (b *Bus) DeadLetter(ctx context.Context, m *ports.Delivered, reason, description string) error {
	if err := checkDelivered(m); err != nil {
		return err
	}
	if isDLQ(m.Queue) {
		return domain.Invalid("queue", "message %s is already dead-lettered", m.ID)
	}
	dlq := ports.DeadLetterQueue(m.Queue)
	var n int64
	err := b.db.commit.write(ctx, "dead-letter "+m.ID+" on "+m.Queue, func(w *writeTx) error {
		res, err := w.stmt(b.db.st.msgDeadLetter).Exec(m.SequenceNumber, m.Queue, m.LockToken, time.Now().UnixNano(), dlq, reason, description)
		n = affected(res, err)
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return lockLost("dead-letter", m)
	}
	b.signal(dlq)
	return nil
}

func checkDelivered(m *ports.Delivered) error {
	if m == nil || m.LockToken == "" {
		return domain.Invalid("message", "is not a received message")
	}
	return nil
}

// lockLost is the error of a settlement whose lock expired, or was taken
// over by a later delivery, or was already used.
func lockLost(op string, m *ports.Delivered) error {
	return domain.Errorf(domain.ECONFLICT, "%s message %s on %s: lock lost", op, m.ID, m.Queue)
}

// Ready implements ports.Backlog: a locked message's visible_at is its lock
// expiry and a delayed one's its time, so both are later than now.
func (b *Bus) Ready(ctx context.Context, queue string) (int, error) {
	var n int
	if err := b.db.st.msgReady.QueryRowContext(ctx, queue, time.Now().UnixNano()).Scan(&n); err != nil {
		return 0, b.db.fail(err, "ready messages of %s", queue)
	}
	return n, nil
}

// Depth counts the queue's messages, whether visible, delayed or locked, and
// those in its dead-letter queue.
func (b *Bus) Depth(ctx context.Context, queue string) (active, deadLettered int, err error) {
	if err := b.db.st.msgCount.QueryRowContext(ctx, queue).Scan(&active); err != nil {
		return 0, 0, b.db.fail(err, "depth of %s", queue)
	}
	if err := b.db.st.msgCount.QueryRowContext(ctx, ports.DeadLetterQueue(queue)).Scan(&deadLettered); err != nil {
		return 0, 0, b.db.fail(err, "depth of %s", queue)
	}
	return active, deadLettered, nil
}
