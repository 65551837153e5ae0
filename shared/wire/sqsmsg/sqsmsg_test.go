package sqsmsg

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

func TestQueueNames(t *testing.T) {
	t.Parallel()
	tests := []struct{ prefix, port, sqs string }{
		{"", "delivery-requests", "delivery-requests.fifo"},
		{"", ports.DeadLetterQueue("delivery-requests"), "delivery-requests-dlq.fifo"},
		{"prod-", "delivery-requests", "prod-delivery-requests.fifo"},
		{"prod-", ports.DeadLetterQueue("drone-scheduled"), "prod-drone-scheduled-dlq.fifo"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.sqs, QueueName(tt.prefix, tt.port))
		assert.Equal(t, tt.port, PortQueue(tt.prefix, tt.sqs))
		assert.Equal(t, tt.port, PortQueue(tt.prefix, "arn:aws:sqs:eu-west-1:123456789012:"+tt.sqs), "from an event source ARN")
		assert.Equal(t, tt.port, PortQueue(tt.prefix, "https://sqs.eu-west-1.amazonaws.com/123456789012/"+tt.sqs), "from a queue URL")
	}
}

func TestDedupID(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "d-1:drone-scheduled", DedupID("d-1:drone-scheduled"), "the ids the steps make pass unchanged")
	for _, id := range []string{"with space", "ünïcode", strings.Repeat("x", 129)} {
		got := DedupID(id)
		assert.Regexp(t, `^sha256-[0-9a-f]{64}$`, got, id)
		assert.Equal(t, got, DedupID(id), "stable, so a repeat still deduplicates")
	}
}

func TestSequenceNumber(t *testing.T) {
	t.Parallel()
	// SQS's numbers are 2^64 plus a growing part; the low 63 bits keep order.
	a, b := sequenceNumber("18849496460467696128"), sequenceNumber("18849496460467696129")
	assert.Positive(t, a)
	assert.Equal(t, a+1, b)
	assert.Equal(t, int64(42), sequenceNumber("42"))
	assert.Zero(t, sequenceNumber(""))
	assert.Zero(t, sequenceNumber("not a number"))
}

func TestRecordDelivered(t *testing.T) {
	t.Parallel()
	r := Record{
		MessageID: "sqs-id", ReceiptHandle: "rh", Body: `{"a":1}`,
		Attributes: map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123", "SequenceNumber": "18849496460467696128"},
		MessageAttributes: map[string]string{AttrID: "d1:requested", AttrCorrelationID: "c", AttrOperation: "delivery",
			AttrNotBefore: "2026-11-26T15:00:00.5Z"},
	}
	d := r.Delivered("delivery-requests")
	assert.Equal(t, "d1:requested", d.ID)
	assert.Equal(t, "delivery-requests", d.Queue)
	assert.Equal(t, "c", d.CorrelationID)
	assert.Equal(t, "delivery", d.Operation)
	assert.Equal(t, 3, d.DeliveryCount)
	assert.Equal(t, "rh", d.LockToken)
	assert.True(t, d.EnqueuedAt.Equal(time.UnixMilli(1700000000123)))
	assert.True(t, d.NotBefore.Equal(time.Date(2026, 11, 26, 15, 0, 0, 5e8, time.UTC)))
	assert.Positive(t, d.SequenceNumber)
	assert.Empty(t, d.DeadLetterReason)

	dead := r.Delivered(ports.DeadLetterQueue("delivery-requests"))
	assert.Equal(t, ReasonMaxDeliveryCountExceeded, dead.DeadLetterReason, "only the redrive policy moves a message without a reason")
	r.MessageAttributes[AttrDeadLetterReason] = "ProcessingFailed"
	assert.Equal(t, "ProcessingFailed", r.Delivered(ports.DeadLetterQueue("delivery-requests")).DeadLetterReason)
}

func TestDropEarlyReceive(t *testing.T) {
	t.Parallel()
	notBefore := time.Date(2026, 11, 26, 15, 0, 0, 5e8, time.UTC)
	for _, c := range []struct {
		name     string
		first    string // ApproximateFirstReceiveTimestamp
		received int
		want     int
	}{
		{"first received before it was due, hidden, now due", "1795705199999", 2, 1},
		{"then run, failed and received again", "1795705199999", 3, 2},
		{"first received when due", "1795705200500", 2, 2},
		{"received once", "1795705199999", 1, 1},
		{"no first receive time", "", 2, 2},
	} {
		d := &ports.Delivered{DeliveryCount: c.received}
		d.NotBefore = notBefore
		DropEarlyReceive(d, map[string]string{"ApproximateFirstReceiveTimestamp": c.first})
		assert.Equal(t, c.want, d.DeliveryCount, c.name)
	}
	d := &ports.Delivered{DeliveryCount: 2}
	DropEarlyReceive(d, map[string]string{"ApproximateFirstReceiveTimestamp": "1795705199999"})
	assert.Equal(t, 2, d.DeliveryCount, "a message with no NotBefore was never hidden")
}
