package sqsdouble

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQSDoubleKeepsSQSRules checks the rules the front adds to goaws, so a
// change to the adapter cannot lean on something real SQS would refuse.
func TestSQSDoubleKeepsSQSRules(t *testing.T) {
	t.Parallel()
	d := StartSQS(t)
	c := d.Client()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	receive := func(in *sqs.ReceiveMessageInput) *sqs.ReceiveMessageOutput {
		t.Helper()
		return Receive(ctx, t, c, in)
	}

	_, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("no-attribute.fifo")})
	assert.Error(t, err, "a .fifo name needs FifoQueue=true")
	fifo, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("rules.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	require.NoError(t, err)

	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: fifo.QueueUrl, MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("d")})
	assert.Error(t, err, "a FIFO message needs a group")
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: fifo.QueueUrl, MessageBody: aws.String("x"), MessageGroupId: aws.String("g")})
	assert.Error(t, err, "a FIFO message needs a deduplication id without content-based deduplication")
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: fifo.QueueUrl, MessageBody: aws.String("x"), MessageGroupId: aws.String("g"),
		MessageDeduplicationId: aws.String("d"), DelaySeconds: 1})
	assert.Error(t, err, "a FIFO queue refuses a per-message delay")

	std, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("rules-standard"), Attributes: map[string]string{"VisibilityTimeout": "1"}})
	require.NoError(t, err)
	start := time.Now()
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: std.QueueUrl, MessageBody: aws.String("later"), DelaySeconds: 1})
	require.NoError(t, err)
	out := receive(&sqs.ReceiveMessageInput{QueueUrl: std.QueueUrl,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
	require.Len(t, out.Messages, 1)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "a standard queue honours DelaySeconds")
	handle := out.Messages[0].ReceiptHandle

	// The lock runs out; the stale handle's delete succeeds and deletes
	// nothing, as SQS documents.
	again := receive(&sqs.ReceiveMessageInput{QueueUrl: std.QueueUrl,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	require.Len(t, again.Messages, 1)
	assert.Equal(t, "2", again.Messages[0].Attributes["ApproximateReceiveCount"])
	_, err = c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: std.QueueUrl, ReceiptHandle: handle})
	require.NoError(t, err)
	_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: std.QueueUrl, ReceiptHandle: handle})
	assert.Error(t, err, "the stale handle holds nothing")
	_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: std.QueueUrl, ReceiptHandle: again.Messages[0].ReceiptHandle})
	require.NoError(t, err, "the message is still there, held by the newer handle")
	_, err = c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: std.QueueUrl, ReceiptHandle: aws.String("garbage")})
	assert.Error(t, err, "a malformed handle is refused")
}
