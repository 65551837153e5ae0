package host

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

func (h *handler) invokeQueue(w http.ResponseWriter, r *http.Request, fn *function, inv *invocation) {
	ctx := r.Context()
	raw, ok := binding(inv.Data, fn.trigger.Name)
	if !ok {
		h.malformed(w, r, fmt.Errorf("missing Data.%s", fn.trigger.Name))
		return
	}
	msg, warnings, err := decodeMessage(raw, inv.Metadata, fn.trigger.DataType == "binary", fn.qname)
	if err != nil {
		h.malformed(w, r, err)
		return
	}
	// A scheduled copy is a new message to Service Bus, delivered once so
	// far; the step is told every earlier attempt too, so that a rule such
	// as "not found yet, try again twice" counts the copies.
	_, copies := wire.Redelivery(msg.ID)
	msg.DeliveryCount += copies
	// What this runtime logs about the message names it, as the step's lines do.
	ctx = logctx.With(ctx, "messageId", msg.ID, "correlationId", msg.CorrelationID)
	r = r.WithContext(ctx)
	var logs []string
	for _, warn := range warnings {
		h.log.WarnContext(ctx, "undecodable message metadata ignored", "messageId", msg.ID, "detail", warn)
		logs = append(logs, "ignored metadata: "+warn)
	}

	pub := &countingPublisher{Publisher: h.pub}
	outcome, err := functionapp.Process(ctx, fn.queue, pub, msg)
	switch outcome {
	case functionapp.Done:
		logs = append(logs, fmt.Sprintf("message %s processed on delivery %d; %d message(s) published", msg.ID, msg.DeliveryCount, pub.n))
		writeReply(w, reply{Logs: logs})
	case functionapp.Poisonous:
		h.poisoned(w, r, msg, err)
	default:
		h.retryLater(w, r, msg, err, logs)
	}
}

// poisoned fails the invocation of a message that can never succeed, so
// that it ends in its queue's dead-letter queue, where the operator lists
// and replays dead letters, instead of being acknowledged and lost. A
// custom handler cannot dead-letter a message itself, but a failed
// invocation (the host calls EnsureSuccessStatusCode on the answer,
// DefaultHttpWorkerService.cs in Azure/azure-functions-host) makes the
// Service Bus extension abandon its message (MessageProcessor.cs, see
// RetryPolicy), and Service Bus moves a message delivered maxDeliveryCount
// times to the dead-letter queue with MaxDeliveryCountExceeded ("Poison
// messages":
// https://learn.microsoft.com/azure/azure-functions/functions-bindings-service-bus-trigger#poison-messages).
// The step is idempotent, so each delivery until then refuses the message
// the same way and changes nothing more.
func (h *handler) poisoned(w http.ResponseWriter, r *http.Request, msg *ports.Delivered, cause error) {
	ctx := r.Context()
	why, _, _ := strings.Cut(cause.Error(), "\n")
	h.log.InfoContext(ctx, "message can never succeed; its invocation fails so that Service Bus dead-letters it after the queue's maxDeliveryCount",
		"deliveryCount", msg.DeliveryCount)
	functionapp.WriteResponse(w, functionapp.Problem(http.StatusInternalServerError, "",
		fmt.Sprintf("message %s can never succeed (%s); it is failed so that Service Bus dead-letters it", msg.ID, why)))
}

// retryLater schedules the next copy of a message whose step failed
// transiently and answers 200, or answers 500 when the retries are used up
// or the copy cannot be sent (see RetryPolicy).
func (h *handler) retryLater(w http.ResponseWriter, r *http.Request, msg *ports.Delivered, cause error, logs []string) {
	ctx := r.Context()
	_, done := wire.Redelivery(msg.ID)
	if done >= h.retry.Attempts {
		h.log.ErrorContext(ctx, "message failed after its scheduled retries; Service Bus delivers it again until its maxDeliveryCount and then dead-letters it",
			"retries", done, "err", cause)
		functionapp.WriteResponse(w, functionapp.Problem(http.StatusInternalServerError, "",
			fmt.Sprintf("processing failed after %d scheduled retries; the message is left to Service Bus", done)))
		return
	}
	n := done + 1
	wait := h.retry.delay(n, h.jitter())
	next := msg.Message
	next.ID = wire.RedeliveryID(msg.ID, n)
	next.NotBefore = h.now().Add(wait)
	// A step stopped by the end of its invocation's budget still has its
	// retry scheduled, within the settleTime after the budget that is
	// left before functionTimeout (less a few seconds to answer).
	until := time.Now().Add(settleTime)
	if d, ok := ctx.Deadline(); ok {
		until = d.Add(settleTime - 5*time.Second)
	}
	pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), until)
	defer cancel()
	if err := h.pub.Publish(pctx, next); err != nil {
		// Without the copy the message must not be completed: the 500
		// abandons it, and Service Bus delivers it again at once.
		h.log.ErrorContext(ctx, "scheduling a retry failed; the message is abandoned", "retryMessageId", next.ID, "err", err)
		functionapp.WriteResponse(w, functionapp.Problem(http.StatusInternalServerError, "", "processing failed and no retry could be scheduled; the message will be redelivered"))
		return
	}
	h.log.InfoContext(ctx, "retry scheduled", "retry", n, "retryMessageId", next.ID, "retryIn", wait.String())
	// The first line names the failure; a panic's stack trace stays in the
	// handler's own log.
	why, _, _ := strings.Cut(cause.Error(), "\n")
	logs = append(logs, fmt.Sprintf("message %s failed and retry %d of %d is scheduled as %s at %s: %s",
		msg.ID, n, h.retry.Attempts, next.ID, next.NotBefore.UTC().Format(time.RFC3339), why))
	writeReply(w, reply{Logs: logs})
}

// countingPublisher counts what a step published, for the invocation's logs.
type countingPublisher struct {
	ports.Publisher
	n int
}

func (p *countingPublisher) Publish(ctx context.Context, msgs ...ports.Message) error {
	if err := p.Publisher.Publish(ctx, msgs...); err != nil {
		return err
	}
	p.n += len(msgs)
	return nil
}

// decodeMessage builds the delivered message from a Service Bus invocation.
// Only a missing message id or body is an error: the rest is informational,
// and failing every message because a host version formats a time
// differently would stop the whole pipeline, so undecodable values become
// warnings and zero values instead.
func decodeMessage(raw json.RawMessage, md map[string]json.RawMessage, binary bool, queue string) (*ports.Delivered, []string, error) {
	body, err := messageBody(raw, binary)
	if err != nil {
		return nil, nil, err
	}
	d := metaDecoder{md: md}
	msg := &ports.Delivered{
		Message: ports.Message{
			ID:            d.str("MessageId"),
			Queue:         queue,
			Body:          body,
			CorrelationID: d.str("CorrelationId"),
		},
		DeliveryCount:  int(d.int("DeliveryCount")),
		SequenceNumber: d.int("SequenceNumber"),
		LockToken:      d.str("LockToken"),
	}
	msg.EnqueuedAt = d.when("EnqueuedTimeUtc")
	if msg.EnqueuedAt.IsZero() {
		msg.EnqueuedAt = d.when("EnqueuedTime")
	}
	props := d.obj("ApplicationProperties")
	if props == nil {
		props = d.obj("UserProperties") // the name before extension v5
	}
	msg.Operation = d.prop(props, "operation")
	// The trace context the sender wrote, so the step continues its trace.
	msg.TraceParent, msg.TraceState = tracing.FromProperties(func(key string) string { return d.prop(props, key) })
	// The versions of documents the sending step left behind.
	msg.Versions = d.prop(props, ports.VersionsProperty)
	// Service Bus keeps a dead-lettered message's reason in these
	// properties, which a function reading a dead-letter queue wants.
	msg.DeadLetterReason = d.prop(props, "DeadLetterReason")
	msg.DeadLetterDescription = d.prop(props, "DeadLetterErrorDescription")
	if msg.ID == "" {
		return nil, nil, errors.New("missing Metadata.MessageId")
	}
	return msg, d.warnings, nil
}

// messageBody accepts the three ways a body arrives: base64 for a binary
// trigger, a JSON string holding the JSON body, and the JSON body itself.
func messageBody(raw json.RawMessage, binary bool) ([]byte, error) {
	if isNull(raw) {
		return nil, nil // an empty message; the step decides what that means
	}
	s, ok := jsonString(raw)
	if !ok {
		return raw, nil
	}
	if binary {
		// A double-encoded JSON object or array is never valid base64
		// ('{', '[' and '"' are outside its alphabet), so falling back to
		// the string cannot misread a body the host did not encode.
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return []byte(s), nil
}

// metaDecoder reads metadata keys, collecting what it could not decode.
type metaDecoder struct {
	md       map[string]json.RawMessage
	warnings []string
}

func (d *metaDecoder) raw(key string) json.RawMessage {
	v, _ := binding(d.md, key)
	return v
}

func (d *metaDecoder) warn(key string, err error) {
	d.warnings = append(d.warnings, key+": "+err.Error())
}

func (d *metaDecoder) str(key string) string {
	s, err := scalarString(d.raw(key))
	if err != nil {
		d.warn(key, err)
	}
	return s
}

func (d *metaDecoder) int(key string) int64 {
	n, err := scalarInt(d.raw(key))
	if err != nil {
		d.warn(key, err)
	}
	return n
}

func (d *metaDecoder) when(key string) time.Time {
	t, err := scalarTime(d.raw(key))
	if err != nil {
		d.warn(key, err)
	}
	return t
}

func (d *metaDecoder) obj(key string) map[string]json.RawMessage {
	m, err := object(d.raw(key))
	if err != nil {
		d.warn(key, err)
	}
	return m
}

func (d *metaDecoder) prop(props map[string]json.RawMessage, key string) string {
	v, ok := props[key]
	if !ok {
		return ""
	}
	s, err := scalarString(v)
	if err != nil {
		d.warn("ApplicationProperties."+key, err)
	}
	return s
}
