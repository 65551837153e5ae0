package sqs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
)

// queue is a resolved SQS queue.
type queue struct {
	port       string // the port's name for it
	name       string // the SQS name
	url        string
	visibility time.Duration // the queue's visibility timeout: how long a receive locks
}

// queue resolves a port queue name to its SQS queue, once per Bus: the URL
// and the visibility timeout do not change while the queue exists.
func (b *Bus) queue(ctx context.Context, port string) (*queue, error) {
	name := sqsmsg.QueueName(b.opts.QueuePrefix, port)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, domain.Unavailable(ErrClosed, "queue %s", port)
	}
	q := b.queues[name]
	b.mu.Unlock()
	if q != nil {
		return q, nil
	}
	q, err := b.resolve(ctx, port, name)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cached := b.queues[name]; cached != nil {
		return cached, nil
	}
	b.queues[name] = q
	return q, nil
}

func (b *Bus) resolve(ctx context.Context, port, name string) (*queue, error) {
	url, err := b.queueURL(ctx, name)
	if isNotExist(err) && b.opts.CreateQueues != nil {
		base := strings.TrimSuffix(port, sqsmsg.PortDLQSuffix)
		if err := b.create(ctx, base); err != nil {
			return nil, err
		}
		url, err = b.queueURL(ctx, name)
	}
	if isNotExist(err) {
		return nil, domain.Unavailable(err, "SQS queue %s does not exist: deploy infra/aws/template.yaml, or set SQS_CREATE_QUEUES=true for a local server", name)
	}
	if err != nil {
		return nil, domain.Unavailable(err, "find SQS queue %s", name)
	}
	attrs, err := b.api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout},
	})
	if err != nil {
		return nil, domain.Unavailable(err, "read the attributes of SQS queue %s", name)
	}
	secs, err := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
	if err != nil {
		return nil, domain.Unavailable(err, "SQS queue %s reports no visibility timeout", name)
	}
	return &queue{port: port, name: name, url: url, visibility: time.Duration(secs) * time.Second}, nil
}

func (b *Bus) queueURL(ctx context.Context, name string) (string, error) {
	out, err := b.api.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.QueueUrl), nil
}

// create makes the dead-letter queue of base and then base itself with a
// redrive policy to it. Creating a queue that exists with the same
// attributes succeeds, so two processes may race here harmlessly.
func (b *Bus) create(ctx context.Context, base string) error {
	s := *b.opts.CreateQueues
	if s.VisibilityTimeout <= 0 {
		s.VisibilityTimeout = 30 * time.Second
	}
	if s.MaxReceiveCount <= 0 {
		s.MaxReceiveCount = 10
	}
	visibility := strconv.Itoa(int(math.Ceil(s.VisibilityTimeout.Seconds())))
	fifo := map[string]string{
		string(types.QueueAttributeNameFifoQueue):                 "true",
		string(types.QueueAttributeNameContentBasedDeduplication): "false",
		string(types.QueueAttributeNameVisibilityTimeout):         visibility,
	}
	dlqName := sqsmsg.QueueName(b.opts.QueuePrefix, ports.DeadLetterQueue(base))
	dlq, err := b.api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &dlqName, Attributes: fifo})
	if err != nil {
		return domain.Unavailable(err, "create SQS queue %s", dlqName)
	}
	arn, err := b.api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return domain.Unavailable(err, "read the ARN of SQS queue %s", dlqName)
	}
	attrs := map[string]string{
		string(types.QueueAttributeNameRedrivePolicy): fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`,
			arn.Attributes[string(types.QueueAttributeNameQueueArn)], s.MaxReceiveCount),
	}
	for k, v := range fifo {
		attrs[k] = v
	}
	name := sqsmsg.QueueName(b.opts.QueuePrefix, base)
	if _, err := b.api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs}); err != nil {
		return domain.Unavailable(err, "create SQS queue %s", name)
	}
	return nil
}

func isNotExist(err error) bool {
	var missing *types.QueueDoesNotExist
	return errors.As(err, &missing) || strings.HasSuffix(apiCode(err), "NonExistentQueue")
}
