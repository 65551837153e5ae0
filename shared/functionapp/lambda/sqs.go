package lambda

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
)

// serveSQS processes a batch and reports partial failure: the records to
// retry are listed in BatchItemFailures (the event source mapping has
// ReportBatchItemFailures on), so one bad message does not send its whole
// batch back. Records are independent (each is its own FIFO group), so
// they run at once.
//
// Settlement follows functionapp.Process: Done records are reported
// processed and Lambda deletes them. A Poisonous one is dead-lettered at
// once (deadLetter) and reported processed. Retry records stay, come back
// after the visibility timeout, and reach the dead-letter queue after
// maxReceiveCount receives.
func (h *Handler) serveSQS(ctx context.Context, event json.RawMessage) (*events.SQSEventResponse, error) {
	var e events.SQSEvent
	if err := json.Unmarshal(event, &e); err != nil {
		return nil, fmt.Errorf("decode the SQS event: %w", err)
	}
	failed := make([]bool, len(e.Records))
	var wg sync.WaitGroup
	for i := range e.Records {
		wg.Go(func() { failed[i] = !h.processRecord(ctx, &e.Records[i]) })
	}
	wg.Wait()
	resp := &events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for i, f := range failed {
		if f {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: e.Records[i].MessageId})
		}
	}
	return resp, nil
}

// returnMargin is the time an invocation keeps, before its deadline, to
// answer (Invoke ends its context that much earlier). For a batch, the
// records still running then are given up and listed for retry: an
// invocation that fails (a timeout is one: it returns no response) has
// every message of its batch made visible again, those it processed too,
// since a partial batch response counts only when the function returns one
// ("Handling errors for an SQS event source in Lambda", Implementing
// partial batch responses,
// docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html),
// and the webhooks and e-mails of the records that succeeded would be sent
// again. For an HTTP request, the handler's own answer (a 503 problem for a
// store that did not answer) reaches the client instead of the gateway's
// error for a timed-out integration.
const returnMargin = 2 * time.Second

// processRecord runs one record's step and reports whether Lambda may
// delete the record.
func (h *Handler) processRecord(ctx context.Context, rec *events.SQSMessage) bool {
	queue := sqsmsg.PortQueue(h.queuePrefix, rec.EventSourceARN)
	ctx = logctx.With(ctx, "queue", queue, "sqsMessageId", rec.MessageId)
	fn, ok := h.queues[queue]
	if !ok {
		// A mapping to the wrong function is a deployment mistake; keeping
		// the record lets the redrive policy park it where it can be
		// replayed once the mapping is fixed.
		what := "no function consumes it"
		if h.only != "" {
			what = "this deployment serves only " + h.only
		}
		h.log.ErrorContext(ctx, "SQS record from a queue this handler does not serve; it stays on the queue", "eventSourceARN", rec.EventSourceARN, "reason", what)
		return false
	}
	msg := toRecord(rec).Delivered(queue)
	if !msg.NotBefore.IsZero() && h.now().Before(msg.NotBefore) {
		ctx = logctx.With(ctx, "messageId", msg.ID)
		h.delay(ctx, msg)
		return false
	}
	sqsmsg.DropEarlyReceive(msg, rec.Attributes)
	switch outcome, err := functionapp.Process(ctx, fn.fn, h.pub, msg); outcome {
	case functionapp.Done:
		return true
	case functionapp.Poisonous:
		return h.deadLetter(ctx, msg, err)
	}
	return false
}

// deadLetter moves a record that can never succeed to the dead-letter
// queue, where the operator lists and replays dead letters, and reports
// whether Lambda may delete it. Without a DeadLetterer, or if the move
// fails, the record stays: it comes back after the visibility timeout,
// its step refuses it again, and the redrive policy moves it after
// maxReceiveCount receives. Either way it is not lost.
func (h *Handler) deadLetter(ctx context.Context, msg *ports.Delivered, cause error) bool {
	d, ok := h.pub.(DeadLetterer)
	if !ok {
		h.log.InfoContext(ctx, "message can never succeed; it stays on the queue until the redrive policy moves it to the dead-letter queue")
		return false
	}
	if err := d.DeadLetter(ctx, msg, functionapp.PoisonReason, functionapp.PoisonDescription(cause)); err != nil {
		h.log.WarnContext(ctx, "message can never succeed and could not be dead-lettered; it stays on the queue until the redrive policy moves it", "err", err)
		return false
	}
	h.log.InfoContext(ctx, "message dead-lettered", "reason", functionapp.PoisonReason)
	return true
}

// delay hides an early record until its NotBefore, so that SQS, not this
// invocation, does the waiting. Without a Delayer, or if hiding fails, the
// record returns after the queue's visibility timeout and is looked at again.
func (h *Handler) delay(ctx context.Context, msg *ports.Delivered) {
	d, ok := h.pub.(Delayer)
	if !ok {
		h.log.InfoContext(ctx, "message is not due yet; it returns after the visibility timeout", "notBefore", msg.NotBefore)
		return
	}
	if err := d.Delay(ctx, msg); err != nil {
		h.log.WarnContext(ctx, "message is not due yet and could not be hidden until it is", "notBefore", msg.NotBefore, "err", err)
		return
	}
	h.log.DebugContext(ctx, "message is not due yet; hidden until it is", "notBefore", msg.NotBefore)
}

func toRecord(m *events.SQSMessage) sqsmsg.Record {
	r := sqsmsg.Record{
		MessageID: m.MessageId, ReceiptHandle: m.ReceiptHandle, Body: m.Body,
		Attributes: m.Attributes, MessageAttributes: make(map[string]string, len(m.MessageAttributes)),
	}
	for k, v := range m.MessageAttributes {
		if v.StringValue != nil {
			r.MessageAttributes[k] = *v.StringValue
		}
	}
	return r
}
