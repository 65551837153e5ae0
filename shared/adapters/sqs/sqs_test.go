package sqs_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/sqs"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/sqsdouble"
)

// TestBusContract holds the adapter to the bus contract every other bus
// passes, against goaws behind the test double's front.
func TestBusContract(t *testing.T) {
	t.Parallel()
	d := sqsdouble.StartSQS(t)
	porttest.Bus(t, func(t *testing.T, o porttest.BusOptions) ports.Bus {
		return open(t, d, o)
	})
}

func TestBusCarriesVersions(t *testing.T) {
	d := sqsdouble.StartSQS(t)
	porttest.BusCarriesVersions(t, func(t *testing.T, o porttest.BusOptions) ports.Bus {
		return open(t, d, o)
	})
}

func open(t *testing.T, d *sqsdouble.SQS, o porttest.BusOptions) *sqs.Bus {
	t.Helper()
	bus := sqs.New(d.Client(), sqs.Options{CreateQueues: &sqs.QueueSettings{VisibilityTimeout: o.LockDuration, MaxReceiveCount: o.MaxDeliveryCount}})
	t.Cleanup(func() { bus.Close() })
	return bus
}

// patience bounds every wait for the SQS double: only a hang reaches it.
const patience = time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}

func testQueue(t *testing.T) string {
	return fmt.Sprintf("t-%d-%s", time.Now().UnixNano()%1e9, strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
}

func receiveOne(t *testing.T, bus ports.Bus, queue string) *ports.Delivered {
	t.Helper()
	msgs, err := bus.Receive(ctxFor(t), queue, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	return msgs[0]
}

// counting counts the SDK calls the adapter makes.
type counting struct {
	sqs.API
	mu    sync.Mutex
	calls map[string]int
}

func (c *counting) add(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[op]++
}

func (c *counting) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

func (c *counting) SendMessageBatch(ctx context.Context, in *awssqs.SendMessageBatchInput, opts ...func(*awssqs.Options)) (*awssqs.SendMessageBatchOutput, error) {
	c.add("SendMessageBatch")
	return c.API.SendMessageBatch(ctx, in, opts...)
}

func (c *counting) ChangeMessageVisibility(ctx context.Context, in *awssqs.ChangeMessageVisibilityInput, opts ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityOutput, error) {
	c.add("ChangeMessageVisibility")
	return c.API.ChangeMessageVisibility(ctx, in, opts...)
}

// rawReceive long-polls with the bare client until a message comes.
func rawReceive(t *testing.T, c sqs.API, in *awssqs.ReceiveMessageInput) *awssqs.ReceiveMessageOutput {
	t.Helper()
	return sqsdouble.Receive(ctxFor(t), t, c, in)
}

func (c *counting) GetQueueUrl(ctx context.Context, in *awssqs.GetQueueUrlInput, opts ...func(*awssqs.Options)) (*awssqs.GetQueueUrlOutput, error) {
	c.add("GetQueueUrl")
	return c.API.GetQueueUrl(ctx, in, opts...)
}

// TestWireShape checks what another SQS client sees of a published message,
// and that a message from another producer reaches the port intact.
func TestWireShape(t *testing.T) {
	t.Parallel()
	d, q, bus := openOwn(t)
	ctx := ctxFor(t)
	sent := ports.Message{ID: "d1:drone-scheduled", Queue: q, Body: []byte(`{"operation":"delivery"}`), CorrelationID: "corr-1", Operation: "delivery"}
	require.NoError(t, bus.Publish(ctx, sent))

	raw := d.Client()
	url, err := raw.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(q + ".fifo")})
	require.NoError(t, err, "the queue is a FIFO queue named after the port's queue")

	prefixed := sqs.New(d.Client(), sqs.Options{CreateQueues: &sqs.QueueSettings{}, QueuePrefix: "stack-"})
	require.NoError(t, prefixed.Publish(ctx, ports.Message{ID: "p", Queue: q, Body: []byte(`{}`)}))
	_, err = raw.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("stack-" + q + ".fifo")})
	require.NoError(t, err, "a prefix begins the queue's name")
	_, err = raw.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("stack-" + q + "-dlq.fifo")})
	require.NoError(t, err, "and its dead-letter queue's")
	assert.Equal(t, "p", receiveOne(t, prefixed, q).ID)
	out := rawReceive(t, raw, &awssqs.ReceiveMessageInput{
		QueueUrl: url.QueueUrl, MaxNumberOfMessages: 1,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	require.Len(t, out.Messages, 1)
	m := out.Messages[0]
	assert.Equal(t, string(sent.Body), aws.ToString(m.Body))
	assert.Equal(t, sent.ID, m.Attributes["MessageDeduplicationId"], "SQS deduplicates on the port's id")
	assert.Equal(t, sent.ID, m.Attributes["MessageGroupId"], "each message is its own group")
	assert.Equal(t, sent.ID, aws.ToString(m.MessageAttributes[sqsmsg.AttrID].StringValue))
	assert.Equal(t, sent.CorrelationID, aws.ToString(m.MessageAttributes[sqsmsg.AttrCorrelationID].StringValue))
	assert.Equal(t, sent.Operation, aws.ToString(m.MessageAttributes[sqsmsg.AttrOperation].StringValue))
	assert.NotContains(t, m.MessageAttributes, sqsmsg.AttrNotBefore, "a message due now carries no NotBefore")
	_, err = raw.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: url.QueueUrl, ReceiptHandle: m.ReceiptHandle})
	require.NoError(t, err)

	// Another producer's message has no id attribute: SQS's id stands in.
	other, err := raw.SendMessage(ctx, &awssqs.SendMessageInput{
		QueueUrl: url.QueueUrl, MessageBody: aws.String(`{}`),
		MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String("x"),
	})
	require.NoError(t, err)
	got := receiveOne(t, bus, q)
	assert.Equal(t, aws.ToString(other.MessageId), got.ID)
	assert.Equal(t, q, got.Queue)
	require.NoError(t, bus.Complete(ctx, got))
}

// openOwn opens a Bus on a double of t's own; q is t's queue.
func openOwn(t *testing.T) (*sqsdouble.SQS, string, *sqs.Bus) {
	d := sqsdouble.StartSQS(t)
	return d, testQueue(t), open(t, d, porttest.BusOptions{})
}

// countingBus opens a Bus, creating its queues, on a double of t's own,
// through an API that counts its calls.
func countingBus(t *testing.T) (*counting, *sqs.Bus) {
	d := sqsdouble.StartSQS(t)
	api := &counting{API: d.Client(), calls: map[string]int{}}
	bus := sqs.New(api, sqs.Options{CreateQueues: &sqs.QueueSettings{}})
	t.Cleanup(func() { bus.Close() })
	return api, bus
}

// TestPublishBatchesOfTen checks that a publish goes in SendMessageBatch
// calls of at most ten, which is SQS's limit, and looks the queue up once.
func TestPublishBatchesOfTen(t *testing.T) {
	t.Parallel()
	q := testQueue(t)
	api, bus := countingBus(t)
	ctx := ctxFor(t)
	var msgs []ports.Message
	for i := range 25 {
		msgs = append(msgs, ports.Message{ID: fmt.Sprintf("m%02d", i), Queue: q, Body: []byte(`{}`)})
	}
	require.NoError(t, bus.Publish(ctx, msgs...))
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "last", Queue: q, Body: []byte(`{}`)}))
	assert.Equal(t, 4, api.count("SendMessageBatch"))
	assert.Equal(t, 2, api.count("GetQueueUrl"), "one miss before the queue is created, then the cached URL")
	seen := map[string]bool{}
	for len(seen) < 26 {
		got, err := bus.Receive(ctx, q, 10)
		require.NoError(t, err)
		for _, m := range got {
			seen[m.ID] = true
			require.NoError(t, bus.Complete(ctx, m))
		}
	}
}

// TestEarlyMessageIsHiddenUntilDue: on a FIFO queue an early message is
// received, hidden and received again when due. SQS counts the early
// receive, the port does not: the step's first run is no redelivery (it
// would send the customer's notices again), and a real one still is.
func TestEarlyMessageIsHiddenUntilDue(t *testing.T) {
	t.Parallel()
	q := testQueue(t)
	api, bus := countingBus(t)
	ctx := ctxFor(t)
	// Whether the first receive came early is seen, not assumed: the adapter
	// hides an early message (ChangeMessageVisibility). On a machine so busy
	// that the message was already due when first received, there was no
	// early receive to count, and the case is tried again.
	for try := 1; ; try++ {
		require.LessOrEqual(t, try, 10, "not once was a message received before its NotBefore")
		hides := api.count("ChangeMessageVisibility")
		due := time.Now().Add(1500 * time.Millisecond).Truncate(time.Millisecond)
		require.NoError(t, bus.Publish(ctx, ports.Message{ID: fmt.Sprintf("retry-%d", try), Queue: q, Body: []byte(`{}`), NotBefore: due}))
		m := receiveOne(t, bus, q)
		assert.False(t, time.Now().Before(due), "received before its NotBefore")
		assert.True(t, m.NotBefore.Equal(due), "NotBefore came back as %v, want %v", m.NotBefore, due)
		assert.Equal(t, 1, m.DeliveryCount, "its first run")
		if api.count("ChangeMessageVisibility") > hides {
			require.NoError(t, bus.Abandon(ctx, m))
			again := receiveOne(t, bus, q)
			assert.Equal(t, 2, again.DeliveryCount, "a redelivery after its first run")
			require.NoError(t, bus.Complete(ctx, again))
			return
		}
		require.NoError(t, bus.Complete(ctx, m))
	}
}

// TestDelayHidesAMessageTakenElsewhere covers what the Lambda runtime does
// with an early record: hide it by its receipt handle.
func TestDelayHidesAMessageTakenElsewhere(t *testing.T) {
	t.Parallel()
	d, q, bus := openOwn(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "m", Queue: q, Body: []byte(`{}`)}))
	raw := d.Client()
	url, err := raw.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(sqsmsg.QueueName("", q))})
	require.NoError(t, err)
	out := rawReceive(t, raw, &awssqs.ReceiveMessageInput{QueueUrl: url.QueueUrl})
	require.Len(t, out.Messages, 1)
	// Visible again at once, as a failed Lambda record with a zero timeout would be...
	_, err = raw.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{QueueUrl: url.QueueUrl, ReceiptHandle: out.Messages[0].ReceiptHandle})
	require.NoError(t, err)
	again := rawReceive(t, raw, &awssqs.ReceiveMessageInput{QueueUrl: url.QueueUrl})
	require.Len(t, again.Messages, 1)
	// ...unless Delay hides it.
	until := time.Now().Add(1500 * time.Millisecond)
	early := &ports.Delivered{Message: ports.Message{ID: "m", Queue: q, NotBefore: until}, LockToken: aws.ToString(again.Messages[0].ReceiptHandle), DeliveryCount: 2}
	require.NoError(t, bus.Delay(ctx, early))
	m := receiveOne(t, bus, q)
	assert.False(t, time.Now().Before(until), "visible before the delay ended")
	require.NoError(t, bus.Complete(ctx, m))
	err = bus.Delay(ctx, early)
	assert.Equal(t, domain.ECONFLICT, domain.ErrorCode(err), "a receipt handle of a deleted message holds nothing: %v", err)
}

// receivedRaw receives one message of q as a Lambda event hands it over.
func receivedRaw(t *testing.T, raw sqs.API, url *string, q string) *ports.Delivered {
	t.Helper()
	out := rawReceive(t, raw, &awssqs.ReceiveMessageInput{QueueUrl: url, MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
	require.Len(t, out.Messages, 1)
	m := out.Messages[0]
	r := sqsmsg.Record{MessageID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Attributes: m.Attributes, MessageAttributes: map[string]string{}}
	for k, v := range m.MessageAttributes {
		r.MessageAttributes[k] = aws.ToString(v.StringValue)
	}
	return r.Delivered(q)
}

// A message due later than SQS can hide one (12 hours from a receive, the
// whole visibility counted; a booked pickup days ahead) is hidden as long
// as SQS allows at its first early receive and sent again as a fresh copy
// at its second, so that neither SQS refuses the hide nor the receives of
// a long wait reach the redrive policy's maxReceiveCount. Before, the hide
// asked for 12 hours from now, which SQS refuses, and the message came
// back every visibility timeout until it was dead-lettered.
func TestALongDelayIsHiddenThenSentAgain(t *testing.T) {
	t.Parallel()
	d, q, bus := openOwn(t)
	ctx := ctxFor(t)
	due := time.Now().Add(72 * time.Hour).Truncate(time.Millisecond)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "booked", Queue: q, Body: []byte(`{"x":1}`), NotBefore: due}))
	raw := d.Client()
	url, err := raw.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(sqsmsg.QueueName("", q))})
	require.NoError(t, err)

	first := receivedRaw(t, raw, url.QueueUrl, q)
	require.Equal(t, 1, first.DeliveryCount)
	require.NoError(t, bus.Delay(ctx, first), "hidden as long as SQS allows")
	// Twelve hours on: visible again, still early.
	_, err = raw.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{QueueUrl: url.QueueUrl, ReceiptHandle: aws.String(first.LockToken)})
	require.NoError(t, err)
	second := receivedRaw(t, raw, url.QueueUrl, q)
	require.Equal(t, 2, second.DeliveryCount)
	require.NoError(t, bus.Delay(ctx, second), "sent again")

	copied := receivedRaw(t, raw, url.QueueUrl, q)
	assert.Equal(t, 1, copied.DeliveryCount, "a fresh copy, counted from one")
	assert.Equal(t, "booked", copied.ID)
	assert.True(t, due.Equal(copied.NotBefore), "still due at %v, got %v", due, copied.NotBefore)
	assert.JSONEq(t, `{"x":1}`, string(copied.Body))
	require.NoError(t, bus.Delay(ctx, copied), "the copy is hidden in turn")
	got, err := raw.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: url.QueueUrl, WaitTimeSeconds: 1})
	require.NoError(t, err)
	assert.Empty(t, got.Messages, "the received original is gone and the copy hidden")
}

func TestOversizedMessageIsInvalid(t *testing.T) {
	t.Parallel()
	d := sqsdouble.StartSQS(t)
	bus := open(t, d, porttest.BusOptions{})
	huge := ports.Message{ID: "huge", Queue: testQueue(t), Body: []byte(`"` + strings.Repeat("x", 300*1024) + `"`)}
	err := bus.Publish(ctxFor(t), huge)
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "%v", err)
}

func TestMissingQueueIsUnavailableAndNamed(t *testing.T) {
	t.Parallel()
	d := sqsdouble.StartSQS(t)
	bus := sqs.New(d.Client(), sqs.Options{})
	err := bus.Publish(ctxFor(t), ports.Message{ID: "m", Queue: "nowhere", Body: []byte(`{}`)})
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err))
	assert.ErrorContains(t, err, "nowhere.fifo does not exist")
}

func TestClosedBusIsUnavailable(t *testing.T) {
	t.Parallel()
	_, q, bus := openOwn(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "m", Queue: q, Body: []byte(`{}`)}))
	m := receiveOne(t, bus, q)
	require.NoError(t, bus.Close())
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(bus.Publish(ctx, ports.Message{ID: "n", Queue: q, Body: []byte(`{}`)})))
	_, err := bus.Receive(ctx, q, 1)
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err))
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(bus.Complete(ctx, m)))
}

func TestPublishRefusesDeadLetterQueuesAndBinaryBodies(t *testing.T) {
	t.Parallel()
	bus := sqs.New(nil, sqs.Options{})
	ctx := context.Background()
	err := bus.Publish(ctx, ports.Message{ID: "m", Queue: ports.DeadLetterQueue("q"), Body: []byte(`{}`)})
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err))
	err = bus.Publish(ctx, ports.Message{ID: "m", Queue: "q", Body: []byte{0xff, 0xfe}})
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err))
}
