// Package servicebus implements ports.Bus on Azure Service Bus queues with
// the azservicebus client: batched sends with duplicate-detection ids,
// scheduled messages, peek-lock receives with automatic lock renewal, and
// settlement that reports a lost lock as ECONFLICT, so that it behaves like
// the embedded bus the contract tests hold it to.
package servicebus

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// DefaultMaxLockRenewal is how long a message's lock is kept alive when
// Options.MaxLockRenewal is zero: the Functions host's default too.
const DefaultMaxLockRenewal = 5 * time.Minute

// OperationProperty is the application property carrying the envelope's
// operation, so that subscriptions and tools can filter on it.
const OperationProperty = "operation"

const (
	contentType = "application/json"

	// maxReceive caps one Receive, as the embedded bus does; the SDK
	// refuses more than 5000.
	maxReceive = 1000

	// minRenewWait keeps a renewal loop from spinning when the broker's
	// clock and ours disagree about when a lock ends.
	minRenewWait = 100 * time.Millisecond

	// forgetGrace is how long past its lock's end a message is still kept
	// for settlement on its own link; after that the broker is asked
	// through the management link, which answers the same way.
	forgetGrace = time.Second

	// DefaultSettleTimeout bounds one settlement. The SDK retries a
	// settlement with its default retry options whatever the client's
	// (azservicebus v1.11.0, messageSettler.go: settleWithRetries passes
	// RetryOptions{}), 4 s, 8 s and 16 s apart: 46 s measured against the
	// double with its links refused. The caller, told EUNAVAILABLE sooner,
	// may try again by lock token once the broker is back.
	DefaultSettleTimeout = 10 * time.Second
)

// dlqSuffix ends every dead-letter queue's name in the ports' naming.
var dlqSuffix = ports.DeadLetterQueue("")

// ErrClosed is the cause of every failure after Close.
var ErrClosed = errors.New("service bus adapter closed")

// Options tune a Bus.
type Options struct {
	// MaxLockRenewal bounds how long after receipt the lock of an unsettled
	// message is renewed; zero means DefaultMaxLockRenewal, negative turns
	// renewal off so that only settlement or expiry ends a lock.
	MaxLockRenewal time.Duration
	// Logger receives lock renewal failures; nil means slog.Default().
	Logger *slog.Logger
	// SettleTimeout bounds one settlement; zero means DefaultSettleTimeout.
	SettleTimeout time.Duration
}

// ClientOptions are the azservicebus client options the adapter is meant
// to run with. The SDK's own retries (azservicebus v1.11.0,
// internal/exported/retry_options.go) default to three after 4 s, 8 s and
// 16 s: during an outage a publish would hold its HTTP request for about
// half a minute before failing (43 s measured against the double with its
// links refused). Everything above the adapter retries by itself (a
// client told 503 with Retry-After, a step rescheduled by the runtime), so
// the SDK needs only to ride out a blip and then fail fast.
func ClientOptions() *azservicebus.ClientOptions {
	return &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{
		MaxRetries: 3, RetryDelay: 250 * time.Millisecond, MaxRetryDelay: 2 * time.Second,
	}}
}

// Bus is a ports.Bus on the queues of one Service Bus namespace.
type Bus struct {
	client        *azservicebus.Client
	renewal       time.Duration // zero: renewal off
	settleTimeout time.Duration
	log           *slog.Logger

	life context.Context // ends at Close, and with it every lock renewal
	stop context.CancelFunc

	mu        sync.Mutex
	closed    bool
	senders   map[string]*azservicebus.Sender
	receivers map[string]*receiver
	held      map[string]*held // received and not yet settled, by lock token
	keepers   sync.WaitGroup
}

var _ ports.Bus = (*Bus)(nil)

// receiver is a cached peek-lock receiver of one queue or dead-letter queue.
type receiver struct {
	*azservicebus.Receiver
	// turn admits one ReceiveMessages at a time, which is all the SDK
	// allows on a receiver; concurrent Receive calls queue here.
	turn chan struct{}
}

// held is a received message whose lock the adapter still manages.
type held struct {
	rcv   *receiver
	msg   *azservicebus.ReceivedMessage
	ctx   context.Context // ends at settlement or Close
	stop  context.CancelFunc
	token string
	// linkFailed says a settlement on the link it came by failed for a
	// reason other than a lost lock: the next one goes by lock token
	// through the management link.
	linkFailed bool
}

// New returns a Bus on the client's namespace; the caller keeps ownership
// of the client and closes it after Close.
func New(client *azservicebus.Client, opts Options) *Bus {
	renewal := opts.MaxLockRenewal
	switch {
	case renewal == 0:
		renewal = DefaultMaxLockRenewal
	case renewal < 0:
		renewal = 0
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	life, stop := context.WithCancel(context.Background())
	return &Bus{
		client:        client,
		renewal:       renewal,
		settleTimeout: cmp.Or(opts.SettleTimeout, DefaultSettleTimeout),
		log:           logger,
		life:          life,
		stop:          stop,
		senders:       map[string]*azservicebus.Sender{},
		receivers:     map[string]*receiver{},
		held:          map[string]*held{},
	}
}

// Close stops lock renewal and closes the senders and receivers; messages
// still unsettled keep their locks until they expire.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	senders, receivers := b.senders, b.receivers
	b.senders, b.receivers, b.held = nil, nil, nil
	b.mu.Unlock()

	b.stop()
	b.keepers.Wait()
	var errs []error
	for q, s := range senders {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close sender for %s: %w", q, err))
		}
	}
	for q, r := range receivers {
		if err := r.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close receiver for %s: %w", q, err))
		}
	}
	return errors.Join(errs...)
}

// Publish implements ports.Publisher. Messages are grouped by queue and
// sent in as few batches as the link's size limit allows, in the order
// given; a message with a NotBefore is sent on its own (see sendQueue).
// Each carries the trace context of the span ctx carries (tracing.Inject)
// in its application properties.
func (b *Bus) Publish(ctx context.Context, msgs ...ports.Message) error {
	tracing.Inject(ctx, msgs)
	ports.StampVersions(ctx, msgs)
	groups, err := ports.ByQueue(msgs, func(m *ports.Message) error {
		if m.Queue == "" || strings.HasSuffix(m.Queue, dlqSuffix) {
			return domain.Invalid("queue", "cannot publish to %q", m.Queue)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range groups {
		s, err := b.sender(g.Queue)
		if err != nil {
			return err
		}
		if err := b.sendQueue(ctx, s, g.Queue, g.Msgs); err != nil {
			return err
		}
	}
	return nil
}

// sendQueue sends one queue's messages. Scheduled messages go one by one
// after the batches: a batch's envelope copies the first message's
// annotations, so one message's schedule could leak onto the whole batch,
// and not every Service Bus version honours a schedule inside a batch.
func (b *Bus) sendQueue(ctx context.Context, s *azservicebus.Sender, queue string, msgs []*ports.Message) error {
	var batch *azservicebus.MessageBatch
	flush := func() error {
		if batch == nil || batch.NumMessages() == 0 {
			return nil
		}
		err := s.SendMessageBatch(ctx, batch, nil)
		batch = nil
		if err != nil {
			return sendFailed(err, queue)
		}
		return nil
	}
	var scheduled []*azservicebus.Message
	for _, m := range msgs {
		out := toServiceBus(m)
		if out.ScheduledEnqueueTime != nil {
			scheduled = append(scheduled, out)
			continue
		}
		for {
			if batch == nil {
				var err error
				if batch, err = s.NewMessageBatch(ctx, nil); err != nil {
					return sendFailed(err, queue)
				}
			}
			err := batch.AddMessage(out, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, azservicebus.ErrMessageTooLarge) || batch.NumMessages() == 0 {
				return sendFailed(err, queue, *out.MessageID)
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, out := range scheduled {
		if err := s.SendMessage(ctx, out, nil); err != nil {
			return sendFailed(err, queue, *out.MessageID)
		}
	}
	return nil
}

func sendFailed(err error, queue string, id ...string) error {
	what := "publish to " + queue
	if len(id) > 0 {
		what = fmt.Sprintf("publish %s to %s", id[0], queue)
	}
	if errors.Is(err, azservicebus.ErrMessageTooLarge) {
		return &domain.Error{Code: domain.EINVALID, Field: "message", Message: what + ": the message is larger than the queue accepts", Err: err}
	}
	return domain.Unavailable(err, "%s", what)
}

func toServiceBus(m *ports.Message) *azservicebus.Message {
	id := m.ID
	if id == "" {
		id = platform.IDs{}.NewID()
	}
	ct := contentType
	out := &azservicebus.Message{
		MessageID:             &id,
		Body:                  m.Body,
		ContentType:           &ct,
		ApplicationProperties: map[string]any{OperationProperty: m.Operation},
	}
	if m.CorrelationID != "" {
		corr := m.CorrelationID
		out.CorrelationID = &corr
	}
	if m.TraceParent != "" {
		// Under the names Azure's SDKs write (see tracing.PropTraceParent),
		// so that the Functions host and any other Azure client read them.
		out.ApplicationProperties[tracing.PropTraceParent] = m.TraceParent
		out.ApplicationProperties[tracing.PropDiagnosticID] = m.TraceParent
		if m.TraceState != "" {
			out.ApplicationProperties[tracing.PropTraceState] = m.TraceState
		}
	}
	if m.Versions != "" {
		out.ApplicationProperties[ports.VersionsProperty] = m.Versions
	}
	if !m.NotBefore.IsZero() {
		at := m.NotBefore.UTC()
		out.ScheduledEnqueueTime = &at
	}
	return out
}

// Receive implements ports.Consumer.
func (b *Bus) Receive(ctx context.Context, queue string, n int) ([]*ports.Delivered, error) {
	if queue == "" {
		return nil, domain.Invalid("queue", "is required")
	}
	n = min(max(n, 1), maxReceive)
	r, err := b.receiver(queue)
	if err != nil {
		return nil, err
	}
	select {
	case r.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.turn }()
	for {
		msgs, err := r.ReceiveMessages(ctx, n, nil)
		if len(msgs) > 0 {
			return b.hold(queue, r, msgs), nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, domain.Unavailable(err, "receive from %s", queue)
		}
		// No messages and no error: the SDK rebuilt a failed link. Wait on.
	}
}

// hold maps received messages and keeps them for settlement, renewing
// their locks meanwhile.
func (b *Bus) hold(queue string, r *receiver, msgs []*azservicebus.ReceivedMessage) []*ports.Delivered {
	out := make([]*ports.Delivered, 0, len(msgs))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		d := fromServiceBus(queue, m)
		out = append(out, d)
		if b.closed {
			continue
		}
		ctx, stop := context.WithCancel(b.life)
		h := &held{rcv: r, msg: m, ctx: ctx, stop: stop, token: d.LockToken}
		b.held[h.token] = h
		b.keepers.Add(1)
		go b.keep(h, deref(m.LockedUntil))
	}
	return out
}

func fromServiceBus(queue string, m *azservicebus.ReceivedMessage) *ports.Delivered {
	d := &ports.Delivered{
		Message: ports.Message{
			ID:            m.MessageID,
			Queue:         queue,
			Body:          m.Body,
			CorrelationID: deref(m.CorrelationID),
			NotBefore:     deref(m.ScheduledEnqueueTime),
		},
		DeliveryCount:         int(m.DeliveryCount),
		EnqueuedAt:            deref(m.EnqueuedTime),
		SequenceNumber:        deref(m.SequenceNumber),
		LockToken:             lockTokenString(m.LockToken),
		LockedUntil:           deref(m.LockedUntil),
		DeadLetterReason:      deref(m.DeadLetterReason),
		DeadLetterDescription: deref(m.DeadLetterErrorDescription),
	}
	d.Operation, _ = m.ApplicationProperties[OperationProperty].(string)
	d.Versions, _ = m.ApplicationProperties[ports.VersionsProperty].(string)
	d.TraceParent, d.TraceState = tracing.FromProperties(func(key string) string {
		v, _ := m.ApplicationProperties[key].(string)
		return v
	})
	return d
}

// keep renews a held message's lock at about half its remaining time until
// the renewal budget is spent, then forgets the message once the lock has
// ended, so that an abandoned Delivered does not pin memory.
func (b *Bus) keep(h *held, lockedUntil time.Time) {
	defer b.keepers.Done()
	deadline := time.Now().Add(b.renewal)
	for b.renewal > 0 && !lockedUntil.IsZero() {
		wait := max(time.Until(lockedUntil)/2, minRenewWait)
		if time.Now().Add(wait).After(deadline) {
			break // a later renewal would overrun the budget
		}
		if !sleep(h.ctx, wait) {
			return
		}
		err := h.rcv.RenewMessageLock(h.ctx, h.msg, nil)
		switch {
		case h.ctx.Err() != nil:
			return
		case err == nil && h.msg.LockedUntil != nil:
			lockedUntil = *h.msg.LockedUntil
		case isLockLost(err):
			b.forget(h)
			return
		case err != nil:
			// Try again at the next interval while the lock lasts.
			b.log.Warn("renew message lock", "messageId", h.msg.MessageID, "err", err)
		}
	}
	if sleep(h.ctx, time.Until(lockedUntil)+forgetGrace) {
		b.forget(h)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// forget drops a held message unless a settlement already took it.
func (b *Bus) forget(h *held) {
	b.mu.Lock()
	if b.held[h.token] == h {
		delete(b.held, h.token)
	}
	b.mu.Unlock()
	h.stop()
}

// take removes a held message for settlement, or returns nil if the
// adapter no longer holds it.
func (b *Bus) take(token string) *held {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.held[token]
	if h != nil {
		delete(b.held, token)
	}
	return h
}

// putBack returns a message whose settlement failed for a passing reason,
// so that a retry finds it, and its renewal goes on. The retry settles by
// lock token through the management link: a link that did not answer (an
// outage's detached link, or one gone silent: 93 messages of one run under
// load timed out on their links for minutes while settlements by lock token
// were answered) may not answer the next time either, and the SDK, which
// falls back to the management link only when the link reports itself
// gone (azservicebus v1.11.0, messageSettler.go, shouldSettleOnMgmtLink),
// would wait on it again.
func (b *Bus) putBack(h *held) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h.linkFailed = true
	if !b.closed && h.ctx.Err() == nil {
		b.held[h.token] = h
	}
}

// Complete implements ports.Consumer.
func (b *Bus) Complete(ctx context.Context, m *ports.Delivered) error {
	return b.settle(ctx, m, "complete", func(ctx context.Context, r *azservicebus.Receiver, msg *azservicebus.ReceivedMessage) error {
		return r.CompleteMessage(ctx, msg, nil)
	})
}

// Abandon implements ports.Consumer.
func (b *Bus) Abandon(ctx context.Context, m *ports.Delivered) error {
	return b.settle(ctx, m, "abandon", func(ctx context.Context, r *azservicebus.Receiver, msg *azservicebus.ReceivedMessage) error {
		return r.AbandonMessage(ctx, msg, nil)
	})
}

// DeadLetter implements ports.Consumer.
func (b *Bus) DeadLetter(ctx context.Context, m *ports.Delivered, reason, description string) error {
	if m != nil && strings.HasSuffix(m.Queue, dlqSuffix) {
		return domain.Invalid("queue", "message %s is already dead-lettered", m.ID)
	}
	return b.settle(ctx, m, "dead-letter", func(ctx context.Context, r *azservicebus.Receiver, msg *azservicebus.ReceivedMessage) error {
		return r.DeadLetterMessage(ctx, msg, &azservicebus.DeadLetterOptions{Reason: &reason, ErrorDescription: &description})
	})
}

// settle settles on the link the message came by while the adapter holds
// it, unless a settlement there failed (putBack). Otherwise (that, settled
// before, lock expired, or received by another Bus)
// it settles by lock token through the queue's management link, and the
// broker, which alone knows, answers whether the lock is still held.
func (b *Bus) settle(ctx context.Context, m *ports.Delivered, op string, fn func(context.Context, *azservicebus.Receiver, *azservicebus.ReceivedMessage) error) error {
	if m == nil || m.LockToken == "" || m.Queue == "" {
		return domain.Invalid("message", "is not a received message")
	}
	ctx, cancel := context.WithTimeout(ctx, b.settleTimeout)
	defer cancel()
	h := b.take(m.LockToken)
	var (
		r   *receiver
		msg *azservicebus.ReceivedMessage
	)
	if h != nil && !h.linkFailed {
		r, msg = h.rcv, h.msg
	} else {
		token, err := parseLockToken(m.LockToken)
		if err != nil {
			return domain.Invalid("message", "lock token %q: %v", m.LockToken, err)
		}
		if r, err = b.receiver(m.Queue); err != nil {
			return err
		}
		// A message with only a lock token is settled on the management link.
		msg = &azservicebus.ReceivedMessage{LockToken: token}
	}
	err := fn(ctx, r.Receiver, msg)
	switch {
	case err == nil:
		if h != nil {
			h.stop()
		}
		return nil
	case isLockLost(err):
		if h != nil {
			h.stop()
		}
		return &domain.Error{Code: domain.ECONFLICT, Message: fmt.Sprintf("%s message %s on %s: lock lost", op, m.ID, m.Queue), Err: err}
	default:
		if h != nil {
			b.putBack(h)
		}
		return domain.Unavailable(err, "%s message %s on %s", op, m.ID, m.Queue)
	}
}

func isLockLost(err error) bool {
	var sbErr *azservicebus.Error
	return errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeLockLost
}

func (b *Bus) sender(queue string) (*azservicebus.Sender, error) {
	return openOnce(b, &b.senders, queue, "publish to", func() (*azservicebus.Sender, error) {
		s, err := b.client.NewSender(queue, nil)
		if err != nil {
			return nil, domain.Unavailable(err, "open sender for %s", queue)
		}
		return s, nil
	})
}

// receiver returns the cached peek-lock receiver of a queue, or of its
// dead-letter sub-queue for a name made by ports.DeadLetterQueue.
func (b *Bus) receiver(queue string) (*receiver, error) {
	return openOnce(b, &b.receivers, queue, "receive from", func() (*receiver, error) {
		opts := &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock}
		name := queue
		if base, ok := strings.CutSuffix(queue, dlqSuffix); ok {
			name, opts.SubQueue = base, azservicebus.SubQueueDeadLetter
		}
		rcv, err := b.client.NewReceiverForQueue(name, opts)
		if err != nil {
			return nil, domain.Unavailable(err, "open receiver for %s", queue)
		}
		return &receiver{Receiver: rcv, turn: make(chan struct{}, 1)}, nil
	})
}

// openOnce returns the link to queue cached in *links, opening it first
// when there is none, under the bus's lock; once the bus is closed it
// opens nothing and says what it could not do (doing, as "publish to").
func openOnce[L any](b *Bus, links *map[string]*L, queue, doing string, open func() (*L, error)) (*L, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, domain.Unavailable(ErrClosed, "%s %s", doing, queue)
	}
	if l := (*links)[queue]; l != nil {
		return l, nil
	}
	l, err := open()
	if err != nil {
		return nil, err
	}
	(*links)[queue] = l
	return l, nil
}

// lockTokenString formats a lock token as a UUID, as Service Bus tools show it.
func lockTokenString(t [16]byte) string {
	h := hex.EncodeToString(t[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func parseLockToken(s string) ([16]byte, error) {
	var t [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != len(t) {
		return t, errors.New("not a UUID")
	}
	copy(t[:], raw)
	return t, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
