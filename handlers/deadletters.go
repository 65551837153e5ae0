package handlers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/deadletter"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// deadLetterWait is how long a listing waits for a dead-letter queue that
// cannot be counted (Service Bus) to answer: an empty one answers nothing.
// The queues are read at once, so a listing takes about this long there.
const deadLetterWait = time.Second

// replaySearch bounds the dead-lettered messages a replay looks through
// for the one it replays.
const replaySearch = 500

// deadLetterView is one dead-lettered message.
type deadLetterView struct {
	ID            string    `json:"id"`
	Queue         string    `json:"queue"`
	Reason        string    `json:"reason"`
	Description   string    `json:"description,omitempty"`
	EnqueuedAt    time.Time `json:"enqueuedAt"`
	DeliveryCount int       `json:"deliveryCount"`
	Operation     string    `json:"operation,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	// DeliveryID is the delivery the message names, when its body says.
	DeliveryID string `json:"deliveryId,omitempty"`
	// Body is the message's body as text, cut at maxDeadLetterBody bytes.
	Body string `json:"body"`
}

const maxDeadLetterBody = 512

// deadLetterList is the body of GET /api/deadletters.
type deadLetterList struct {
	Items []deadLetterView `json:"items"`
	// Truncated names the queues that hold more than limit messages.
	Truncated []string `json:"truncated"`
}

// deadLetterBus is the bus whose dead letters the operator reads, or an
// error when this deployment has none it can read.
func (h *Handlers) deadLetterBus() (ports.Bus, error) {
	if h.deadLetters == nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "this deployment cannot read its dead-letter queues")
	}
	return h.deadLetters, nil
}

// ListDeadLetters serves GET /api/deadletters with the operator key: the
// dead-lettered messages of every queue (or ?queue=), up to limit per
// queue, in the order the bus gives them (deadletter.Browse: without a
// lock on a bus that can browse; elsewhere each is locked for a moment and
// given straight back). Every message stays dead-lettered.
func (h *Handlers) ListDeadLetters(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	q, err := wire.ParseDeadLetterListing(req.Query, topology.Queues)
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	bus, err := h.deadLetterBus()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	got := make([][]*ports.Delivered, len(q.Queues))
	errs := make([]error, len(q.Queues))
	var wg sync.WaitGroup
	for i, name := range q.Queues {
		wg.Go(func() {
			// One more than the limit says whether the queue holds more.
			got[i], errs[i] = deadletter.Browse(ctx, bus, name, q.Limit+1, deadLetterWait)
		})
	}
	wg.Wait()
	out := deadLetterList{Items: []deadLetterView{}, Truncated: []string{}}
	for i, name := range q.Queues {
		msgs := got[i]
		if errs[i] != nil {
			err = errs[i]
			continue
		}
		if len(msgs) > q.Limit {
			msgs = msgs[:q.Limit]
			out.Truncated = append(out.Truncated, name)
		}
		for _, m := range msgs {
			out.Items = append(out.Items, deadLetterOf(name, m))
		}
	}
	if err != nil {
		return h.errorResponse(ctx, domain.Unavailable(err, "read the dead-letter queues"))
	}
	return functionapp.JSON(http.StatusOK, out)
}

func deadLetterOf(queue string, m *ports.Delivered) deadLetterView {
	v := deadLetterView{ID: m.ID, Queue: queue, Reason: m.DeadLetterReason, Description: m.DeadLetterDescription,
		EnqueuedAt: m.EnqueuedAt.UTC(), DeliveryCount: m.DeliveryCount, Operation: m.Operation, CorrelationID: m.CorrelationID}
	if env, err := wire.ParseEnvelope(m.Body); err == nil {
		v.DeliveryID = env.DeliveryID
	}
	body := m.Body
	if len(body) > maxDeadLetterBody {
		body = body[:maxDeadLetterBody]
	}
	v.Body = string(body)
	return v
}

// replayed is the body of POST /api/deadletters/{queue}/{id}/replay.
type replayed struct {
	ID         string `json:"id"`
	Queue      string `json:"queue"`
	ReplayedAs string `json:"replayedAs"`
}

// ReplayDeadLetter serves POST /api/deadletters/{queue}/{id}/replay with
// the operator key (202): the message goes back to its queue under a new
// id and leaves the dead-letter queue (deadletter.Replay). Replaying it
// again answers 404, as it is no longer dead-lettered; should the
// message be sent twice (a replay that could not remove it, retried), the
// step it goes to is idempotent.
func (h *Handlers) ReplayDeadLetter(ctx context.Context, req *functionapp.Request) *functionapp.Response {
	queue, id := req.Params["queue"], req.Params["id"]
	if err := wire.KnownQueue("queue", queue, topology.Queues); err != nil {
		return h.errorResponse(ctx, err)
	}
	if err := wire.ValidMessageID("id", id); err != nil {
		return h.errorResponse(ctx, err)
	}
	bus, err := h.deadLetterBus()
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	again, err := deadletter.Replay(ctx, bus, queue, id, replaySearch, deadLetterWait)
	if err != nil && !domain.IsCode(err, domain.ENOTFOUND) {
		err = domain.Unavailable(err, "replay %s", id)
	}
	if err != nil {
		return h.errorResponse(ctx, err)
	}
	h.log.InfoContext(ctx, "dead letter replayed", "queue", queue, "messageId", id, "replayedAs", again)
	return functionapp.JSON(http.StatusAccepted, replayed{ID: id, Queue: queue, ReplayedAs: again})
}
