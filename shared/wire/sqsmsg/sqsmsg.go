// Package sqsmsg says how a ports.Message travels across Amazon SQS: the
// message attributes that carry its id, correlation id, operation,
// schedule and trace context, the queue names, and how a received record (from the SDK or
// from a Lambda SQS event) becomes a ports.Delivered again. It uses no SDK,
// so the Lambda runtime and the SQS adapter share it without the runtime
// importing an adapter.
package sqsmsg

import (
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// The message attributes that carry a ports.Message across SQS. SQS assigns
// its own MessageId, so the port's id travels as an attribute; a Lambda
// event carries the same attributes, which is how the Lambda runtime
// rebuilds the message the adapter sent.
const (
	AttrID                    = "id"
	AttrCorrelationID         = "correlationId"
	AttrOperation             = "operation"
	AttrNotBefore             = "notBefore"
	AttrDeadLetterReason      = "deadLetterReason"
	AttrDeadLetterDescription = "deadLetterDescription"
	// The W3C trace context, under its own names (tracing.PropTraceParent):
	// SQS allows ten message attributes, and these bring the count to eight.
	AttrTraceParent = tracing.PropTraceParent
	AttrTraceState  = tracing.PropTraceState
	// The versions of documents the sending step left behind
	// (ports.Message.Versions): the ninth.
	AttrVersions = ports.VersionsProperty
)

// ReasonMaxDeliveryCountExceeded is the dead-letter reason given to a
// message that SQS's redrive policy moved: SQS records no reason, and this is
// the one Service Bus and the embedded bus use for the same event.
const ReasonMaxDeliveryCountExceeded = "MaxDeliveryCountExceeded"

const (
	fifoSuffix = ".fifo"
	dlqSuffix  = "-dlq"
)

// PortDLQSuffix ends a dead-letter queue's name in the ports' naming.
var PortDLQSuffix = ports.DeadLetterQueue("")

// QueueName maps a port queue name to its SQS queue: "delivery-requests"
// to prefix+"delivery-requests.fifo", and its dead-letter queue
// ports.DeadLetterQueue("delivery-requests") to
// prefix+"delivery-requests-dlq.fifo". The prefix lets several deployments
// share an account and region (the template uses the stack's name).
func QueueName(prefix, queue string) string {
	if base, ok := strings.CutSuffix(queue, PortDLQSuffix); ok {
		return prefix + base + dlqSuffix + fifoSuffix
	}
	return prefix + queue + fifoSuffix
}

// PortQueue is the inverse of QueueName: it maps an SQS queue name (or the
// last part of a queue ARN or URL) back to the port's queue name.
func PortQueue(prefix, name string) string {
	if i := strings.LastIndexAny(name, ":/"); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimPrefix(name, prefix)
	name = strings.TrimSuffix(name, fifoSuffix)
	if base, ok := strings.CutSuffix(name, dlqSuffix); ok {
		return ports.DeadLetterQueue(base)
	}
	return name
}

func IsDLQ(queue string) bool { return strings.HasSuffix(queue, PortDLQSuffix) }

// dedupChars is what SQS accepts in a MessageDeduplicationId and a
// MessageGroupId: 1 to 128 alphanumeric or punctuation characters.
var dedupChars = regexp.MustCompile(`^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~]{1,128}$`)

// DedupID turns a port message id into the MessageDeduplicationId (and
// MessageGroupId) SQS accepts; an id SQS would refuse is replaced by its
// hash, so it still deduplicates with itself.
func DedupID(id string) string {
	if dedupChars.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256-" + hex.EncodeToString(sum[:])
}

// Record is a received SQS message as both the SDK and a Lambda event give
// it: system attributes and string message attributes by name.
type Record struct {
	MessageID         string
	ReceiptHandle     string
	Body              string
	Attributes        map[string]string // SentTimestamp, ApproximateReceiveCount, SequenceNumber...
	MessageAttributes map[string]string
}

// Delivered rebuilds the port's message from a record received from queue
// (a port queue name). LockedUntil is left for the caller, which alone
// knows when the receive began.
func (r Record) Delivered(queue string) *ports.Delivered {
	ma := r.MessageAttributes
	d := &ports.Delivered{
		Message: ports.Message{
			ID:            ma[AttrID],
			Queue:         queue,
			Body:          []byte(r.Body),
			CorrelationID: ma[AttrCorrelationID],
			Operation:     ma[AttrOperation],
			TraceParent:   ma[AttrTraceParent],
			TraceState:    ma[AttrTraceState],
			Versions:      ma[AttrVersions],
		},
		LockToken: r.ReceiptHandle,
	}
	if d.ID == "" {
		// Sent by another producer: SQS's own id is all there is.
		d.ID = r.MessageID
	}
	if at, err := time.Parse(time.RFC3339Nano, ma[AttrNotBefore]); err == nil {
		d.NotBefore = at.UTC()
	}
	if n, err := strconv.Atoi(r.Attributes["ApproximateReceiveCount"]); err == nil {
		d.DeliveryCount = n
	}
	if ms, err := strconv.ParseInt(r.Attributes["SentTimestamp"], 10, 64); err == nil {
		d.EnqueuedAt = time.UnixMilli(ms).UTC()
	}
	d.SequenceNumber = sequenceNumber(r.Attributes["SequenceNumber"])
	if IsDLQ(queue) {
		d.DeadLetterReason = ma[AttrDeadLetterReason]
		d.DeadLetterDescription = ma[AttrDeadLetterDescription]
		if d.DeadLetterReason == "" {
			// Only the redrive policy moves a message without saying why.
			d.DeadLetterReason = ReasonMaxDeliveryCountExceeded
		}
	}
	return d
}

// DropEarlyReceive takes out of d's DeliveryCount (SQS's receive count) the
// receive that came before d was due, for a message received when due: a
// FIFO queue takes no per-message delay, so a message first received before
// its NotBefore was hidden until then (ChangeMessageVisibility), its step
// not run; SQS counts that receive, Service Bus would not have delivered it,
// and a step's first run must not look like a redelivery. attrs are the
// record's system attributes (ApproximateFirstReceiveTimestamp, in
// milliseconds of SQS's clock). A copy sent again to wait longer (the SQS
// adapter's wait) starts its own count, so a copy has at most one such
// receive, unless hiding it failed and it came back early again, which
// this still takes out once.
func DropEarlyReceive(d *ports.Delivered, attrs map[string]string) {
	if d.DeliveryCount < 2 || d.NotBefore.IsZero() {
		return
	}
	ms, err := strconv.ParseInt(attrs["ApproximateFirstReceiveTimestamp"], 10, 64)
	if err == nil && time.UnixMilli(ms).Before(d.NotBefore) {
		d.DeliveryCount--
	}
}

// seqMask keeps the low 63 bits of a sequence number.
var seqMask = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 63), big.NewInt(1))

// sequenceNumber fits SQS's 128-bit FIFO sequence number into the port's
// int64. The numbers SQS issues are 2^64 plus a part that grows with time,
// so the low 63 bits keep their order; a value that does not parse is 0.
func sequenceNumber(s string) int64 {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() <= 0 {
		return 0
	}
	return n.And(n, seqMask).Int64()
}
