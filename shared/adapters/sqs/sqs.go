// Package sqs implements ports.Bus on Amazon SQS FIFO queues with the
// aws-sdk-go-v2 client, so that the standalone runtime and the Lambda
// runtime can chain the steps on AWS.
//
// FIFO queues, because the bus port promises duplicate detection keyed on the
// message id (deliveryId:step) and only FIFO queues offer it: the id becomes
// the MessageDeduplicationId, and SQS drops a repeat within five minutes. Each
// message is its own message group, so no message ever waits behind another
// (FIFO order holds only inside a group, and nothing here needs more). FIFO
// queues refuse a per-message DelaySeconds, so a message with a NotBefore
// carries it as an attribute and a receiver that gets it early hides it again
// with ChangeMessageVisibility until it is due; that early receive counts in
// SQS's ApproximateReceiveCount (and so toward the redrive policy), but not
// in the DeliveryCount the port reports once it is due
// (sqsmsg.DropEarlyReceive), since no step ran.
//
// SQS has no dead-letter operation: DeadLetter sends a copy, with the reason
// as attributes, to the queue's "-dlq" queue and deletes the original, which
// is also where the redrive policy moves a message after maxReceiveCount
// receives. A lock token is the receipt handle of one receive.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
)

// SQS's own limits.
const (
	maxBatchEntries = 10         // messages per SendMessageBatch and per ReceiveMessage
	maxBatchBytes   = 256 * 1024 // payload of one SendMessageBatch
	maxWaitSeconds  = 20         // longest long poll
	maxVisibility   = 12 * time.Hour
)

// ErrClosed is the cause of every failure after Close.
var ErrClosed = errors.New("sqs adapter closed")

// API is the part of *sqs.Client the adapter uses.
type API interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

var _ API = (*sqs.Client)(nil)

// QueueSettings are the attributes of the queues the adapter creates.
type QueueSettings struct {
	// VisibilityTimeout is the lock a receive takes, rounded up to whole
	// seconds (SQS's unit); zero means 30 s, SQS's default.
	VisibilityTimeout time.Duration
	// MaxReceiveCount is how many receives a message gets before the
	// redrive policy moves it to the dead-letter queue; zero means 10.
	MaxReceiveCount int
}

// Options tune a Bus.
type Options struct {
	// CreateQueues, when set, creates a queue and its dead-letter queue the
	// first time either is used. It is for local servers: on AWS the
	// template creates them, and the function's role may not create queues.
	CreateQueues *QueueSettings
	// QueuePrefix begins the name of every SQS queue (see sqsmsg.QueueName).
	QueuePrefix string
	// Logger receives what the adapter cannot report to a caller; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Bus is a ports.Bus on the FIFO queues of one account and region.
type Bus struct {
	api  API
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	closed  bool
	queues  map[string]*queue    // by SQS queue name
	settled map[string]time.Time // receipt handles settled here, until their lock would have ended
}

var _ ports.Bus = (*Bus)(nil)

// New returns a Bus that calls SQS through api.
func New(api API, opts Options) *Bus {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Bus{api: api, opts: opts, log: log, queues: map[string]*queue{}, settled: map[string]time.Time{}}
}

// Close makes every later call fail with ErrClosed; the client holds no
// connections that need closing.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Publish implements ports.Publisher. Messages go in batches of up to ten
// per queue, in the order given, each with the trace context of the span
// ctx carries (tracing.Inject) among its message attributes.
func (b *Bus) Publish(ctx context.Context, msgs ...ports.Message) error {
	tracing.Inject(ctx, msgs)
	ports.StampVersions(ctx, msgs)
	groups, err := ports.ByQueue(msgs, func(m *ports.Message) error {
		if m.Queue == "" || sqsmsg.IsDLQ(m.Queue) {
			return domain.Invalid("queue", "cannot publish to %q", m.Queue)
		}
		if !utf8.Valid(m.Body) {
			return domain.Invalid("message", "message %s: SQS carries text, and the body is not UTF-8", m.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range groups {
		info, err := b.queue(ctx, g.Queue)
		if err != nil {
			return err
		}
		if err := b.sendQueue(ctx, info, g.Msgs); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bus) sendQueue(ctx context.Context, q *queue, msgs []*ports.Message) error {
	var (
		batch []types.SendMessageBatchRequestEntry
		ids   []string
		size  int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := b.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: batch})
		sent := ids
		batch, ids, size = nil, nil, 0
		if err != nil {
			return sendFailed(err, q.port)
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			what := fmt.Sprintf("publish %s to %s: %s: %s", sent[min(i, len(sent)-1)], q.port, aws.ToString(f.Code), aws.ToString(f.Message))
			if f.SenderFault {
				return &domain.Error{Code: domain.EINVALID, Field: "message", Message: what}
			}
			return domain.Unavailable(errors.New(what), "%d of %d messages not sent", len(out.Failed), len(sent))
		}
		return nil
	}
	for _, m := range msgs {
		e := entry(m, strconv.Itoa(len(batch)))
		n := messageSize(e)
		if n > maxBatchBytes {
			return &domain.Error{Code: domain.EINVALID, Field: "message", Message: fmt.Sprintf("publish %s to %s: the message is larger than SQS accepts (%d bytes)", m.ID, q.port, n)}
		}
		if len(batch) == maxBatchEntries || size+n > maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
			e.Id = aws.String("0")
		}
		batch = append(batch, e)
		ids = append(ids, m.ID)
		size += n
	}
	return flush()
}

func sendFailed(err error, queue string) error {
	if code := apiCode(err); code == "BatchRequestTooLong" || code == "InvalidMessageContents" {
		return &domain.Error{Code: domain.EINVALID, Field: "message", Message: "publish to " + queue + ": " + err.Error(), Err: err}
	}
	return domain.Unavailable(err, "publish to %s", queue)
}

// entry builds the batch entry of m; the id, when empty, is made up as the
// other adapters do, so the message still has one to deduplicate on.
func entry(m *ports.Message, batchID string) types.SendMessageBatchRequestEntry {
	id := m.ID
	if id == "" {
		id = platform.IDs{}.NewID()
	}
	dedup := sqsmsg.DedupID(id)
	attrs := map[string]types.MessageAttributeValue{sqsmsg.AttrID: stringAttr(id)}
	if m.CorrelationID != "" {
		attrs[sqsmsg.AttrCorrelationID] = stringAttr(m.CorrelationID)
	}
	if m.Operation != "" {
		attrs[sqsmsg.AttrOperation] = stringAttr(m.Operation)
	}
	if !m.NotBefore.IsZero() {
		attrs[sqsmsg.AttrNotBefore] = stringAttr(m.NotBefore.UTC().Format(time.RFC3339Nano))
	}
	if m.TraceParent != "" {
		attrs[sqsmsg.AttrTraceParent] = stringAttr(m.TraceParent)
		if m.TraceState != "" {
			attrs[sqsmsg.AttrTraceState] = stringAttr(m.TraceState)
		}
	}
	if m.Versions != "" {
		attrs[sqsmsg.AttrVersions] = stringAttr(m.Versions)
	}
	return types.SendMessageBatchRequestEntry{
		Id:                     aws.String(batchID),
		MessageBody:            aws.String(string(m.Body)),
		MessageAttributes:      attrs,
		MessageDeduplicationId: aws.String(dedup),
		// A group per message: see the package comment.
		MessageGroupId: aws.String(dedup),
	}
}

// messageSize is what SQS counts against its size limits: the body and
// every attribute's name, type and value.
func messageSize(e types.SendMessageBatchRequestEntry) int {
	n := len(aws.ToString(e.MessageBody))
	for k, v := range e.MessageAttributes {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

func stringAttr(s string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
}

// Receive implements ports.Consumer with long polls of up to 20 s, repeated
// until a message arrives or ctx ends. A message received before its
// NotBefore is hidden again until then and not returned.
func (b *Bus) Receive(ctx context.Context, queue string, n int) ([]*ports.Delivered, error) {
	if queue == "" {
		return nil, domain.Invalid("queue", "is required")
	}
	n = min(max(n, 1), maxBatchEntries)
	q, err := b.queue(ctx, queue)
	if err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b.isClosed() {
			return nil, domain.Unavailable(ErrClosed, "receive from %s", queue)
		}
		out, err := b.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    &q.url,
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             maxWaitSeconds,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, domain.Unavailable(err, "receive from %s", queue)
		}
		// SQS starts the lock when it hands a message out, which a long poll
		// may do long after the request; the answer's arrival is the
		// nearest time known, late by one network trip.
		received := time.Now()
		var got []*ports.Delivered
		for _, m := range out.Messages {
			d := fromSQS(queue, m)
			d.LockedUntil = received.Add(q.visibility)
			if !sqsmsg.IsDLQ(queue) && time.Until(d.NotBefore) > 0 {
				b.hide(ctx, q, d)
				continue
			}
			sqsmsg.DropEarlyReceive(d, m.Attributes)
			got = append(got, d)
		}
		if len(got) > 0 {
			return got, nil
		}
	}
}

func fromSQS(queue string, m types.Message) *ports.Delivered {
	r := sqsmsg.Record{
		MessageID:         aws.ToString(m.MessageId),
		ReceiptHandle:     aws.ToString(m.ReceiptHandle),
		Body:              aws.ToString(m.Body),
		Attributes:        m.Attributes,
		MessageAttributes: make(map[string]string, len(m.MessageAttributes)),
	}
	for k, v := range m.MessageAttributes {
		if v.StringValue != nil {
			r.MessageAttributes[k] = *v.StringValue
		}
	}
	return r.Delivered(queue)
}

// hide keeps an early message invisible until its NotBefore (wait). A
// failure is only logged: the message then reappears when its visibility
// timeout ends and is looked at again.
func (b *Bus) hide(ctx context.Context, q *queue, d *ports.Delivered) {
	if err := b.wait(ctx, q, d); err != nil {
		b.log.WarnContext(ctx, "could not delay an early message", "queue", q.port, "messageId", d.ID, "err", err)
	}
}

// Delay keeps a message received through another channel (a Lambda event)
// out of sight until its NotBefore (wait); the message must then be
// reported as not processed, so that SQS keeps it.
func (b *Bus) Delay(ctx context.Context, m *ports.Delivered) error {
	q, err := b.queue(ctx, m.Queue)
	if err != nil {
		return err
	}
	if err := b.wait(ctx, q, m); err != nil {
		if isLockLost(err) {
			return &domain.Error{Code: domain.ECONFLICT, Message: "delay a message on " + m.Queue + ": lock lost", Err: err}
		}
		return domain.Unavailable(err, "delay a message on %s", m.Queue)
	}
	return nil
}

// wait makes an early message wait for its NotBefore. A FIFO queue takes no
// per-message delay, so a received message is hidden by its visibility
// timeout, which SQS holds to 12 hours from the receive its receipt handle
// came from (a longer one is refused, not cut: "Total VisibilityTimeout for
// the message is beyond the limit [43200 seconds]", the ChangeMessageVisibility
// reference), and every receive counts toward the redrive policy's
// maxReceiveCount. So a message due within one hide is hidden until it is
// due; one due later (a pickup booked days ahead) is hidden as long as SQS
// allows at its first receive, and at its next, still early, is sent again
// as a fresh copy (its receive count and retention start again; a
// deduplication id of its own, the message id kept) and the received one
// deleted: each copy is received at most twice, whatever the delay. A stop
// between the send and the delete leaves two copies, which the steps, being
// idempotent, treat as a duplicate.
func (b *Bus) wait(ctx context.Context, q *queue, m *ports.Delivered) error {
	// The receive was at most one visibility timeout ago, or the handle
	// would have lapsed.
	window := maxVisibility - q.visibility
	left := time.Until(m.NotBefore)
	switch {
	case left <= window:
		return b.changeVisibility(ctx, q, m.LockToken, left)
	case m.DeliveryCount < 2:
		return b.changeVisibility(ctx, q, m.LockToken, window)
	}
	e := entry(&m.Message, "0")
	fresh := aws.String(sqsmsg.DedupID(m.ID + "~wait-" + strconv.FormatInt(time.Now().UnixNano(), 36)))
	if _, err := b.api.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: &q.url, MessageBody: e.MessageBody, MessageAttributes: e.MessageAttributes,
		MessageDeduplicationId: fresh, MessageGroupId: fresh,
	}); err != nil {
		return fmt.Errorf("send %s again to wait on %s: %w", m.ID, q.port, err)
	}
	return b.delete(ctx, q, m.LockToken)
}

func (b *Bus) changeVisibility(ctx context.Context, q *queue, handle string, d time.Duration) error {
	secs := int32(math.Ceil(min(max(d, 0), maxVisibility).Seconds()))
	_, err := b.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &q.url, ReceiptHandle: aws.String(handle), VisibilityTimeout: secs,
	})
	return err
}

// Complete implements ports.Consumer.
func (b *Bus) Complete(ctx context.Context, m *ports.Delivered) error {
	return b.settle(ctx, m, "complete", func(q *queue) error {
		return b.delete(ctx, q, m.LockToken)
	})
}

// Abandon implements ports.Consumer: the message becomes visible at once.
func (b *Bus) Abandon(ctx context.Context, m *ports.Delivered) error {
	return b.settle(ctx, m, "abandon", func(q *queue) error {
		return b.changeVisibility(ctx, q, m.LockToken, 0)
	})
}

// DeadLetter implements ports.Consumer by sending a copy with the reason to
// the dead-letter queue and then deleting the original. If the delete fails
// the original comes back while its copy stays; the copy keeps the
// original's deduplication id, so dead-lettering the original again within
// five minutes adds no second copy.
func (b *Bus) DeadLetter(ctx context.Context, m *ports.Delivered, reason, description string) error {
	if m != nil && sqsmsg.IsDLQ(m.Queue) {
		return domain.Invalid("queue", "message %s is already dead-lettered", m.ID)
	}
	return b.settle(ctx, m, "dead-letter", func(q *queue) error {
		dlq, err := b.queue(ctx, ports.DeadLetterQueue(m.Queue))
		if err != nil {
			return err
		}
		e := entry(&m.Message, "0")
		if reason != "" {
			e.MessageAttributes[sqsmsg.AttrDeadLetterReason] = stringAttr(reason)
		}
		if description != "" {
			e.MessageAttributes[sqsmsg.AttrDeadLetterDescription] = stringAttr(description)
		}
		if _, err := b.api.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: &dlq.url, MessageBody: e.MessageBody, MessageAttributes: e.MessageAttributes,
			MessageDeduplicationId: e.MessageDeduplicationId, MessageGroupId: e.MessageGroupId,
		}); err != nil {
			return fmt.Errorf("send to %s: %w", dlq.port, err)
		}
		return b.delete(ctx, q, m.LockToken)
	})
}

func (b *Bus) delete(ctx context.Context, q *queue, handle string) error {
	_, err := b.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: aws.String(handle)})
	return err
}

// settle checks what SQS cannot: that this Bus has not settled the message
// already and that its visibility timeout has not run out. SQS may accept a
// delete with a stale receipt handle and leave the message in place, or
// delete a message that another receiver now holds, so a settlement after
// the lock's end is refused here as lost.
func (b *Bus) settle(ctx context.Context, m *ports.Delivered, op string, fn func(*queue) error) error {
	if m == nil || m.LockToken == "" || m.Queue == "" {
		return domain.Invalid("message", "is not a received message")
	}
	lost := func(why string, err error) error {
		return &domain.Error{Code: domain.ECONFLICT, Message: fmt.Sprintf("%s message %s on %s: %s", op, m.ID, m.Queue, why), Err: err}
	}
	now := time.Now()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return domain.Unavailable(ErrClosed, "%s message %s on %s", op, m.ID, m.Queue)
	}
	_, done := b.settled[m.LockToken]
	b.mu.Unlock()
	if done {
		return lost("already settled", nil)
	}
	if !m.LockedUntil.IsZero() && !now.Before(m.LockedUntil) {
		return lost("lock expired", nil)
	}
	q, err := b.queue(ctx, m.Queue)
	if err != nil {
		return err
	}
	err = fn(q)
	if err == nil || isLockLost(err) {
		b.remember(m.LockToken, m.LockedUntil, now)
	}
	switch {
	case err == nil:
		return nil
	case isLockLost(err):
		return lost("lock lost", err)
	case errors.As(err, new(*domain.Error)):
		return err
	default:
		return domain.Unavailable(err, "%s message %s on %s", op, m.ID, m.Queue)
	}
}

// remember notes a settled receipt handle until its lock would have ended,
// after which the expiry check refuses it anyway; that bounds the map.
func (b *Bus) remember(handle string, until, now time.Time) {
	if until.IsZero() {
		until = now.Add(maxVisibility)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for h, t := range b.settled {
		if !now.Before(t) {
			delete(b.settled, h)
		}
	}
	b.settled[handle] = until
}

// isLockLost tells the answers SQS gives for a receipt handle that no longer
// holds its message: deleted, made visible again, or received anew.
func isLockLost(err error) bool {
	var invalid *types.ReceiptHandleIsInvalid
	var notInFlight *types.MessageNotInflight
	if errors.As(err, &invalid) || errors.As(err, &notInFlight) {
		return true
	}
	code := apiCode(err)
	if strings.HasSuffix(code, "MessageNotInflight") || strings.HasSuffix(code, "ReceiptHandleIsInvalid") {
		return true
	}
	// An expired handle is refused as an invalid parameter value.
	var api smithy.APIError
	return strings.HasSuffix(code, "InvalidParameterValue") && errors.As(err, &api) &&
		strings.Contains(strings.ToLower(api.ErrorMessage()), "receipthandle")
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}
