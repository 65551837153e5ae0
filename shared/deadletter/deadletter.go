// Package deadletter reads and replays the messages a bus dead-lettered,
// through the ports alone, so that the operator's command
// (dronedelivery deadletters) and the operator's HTTP endpoints do the
// same thing on every backend.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Wait is how long a listing waits for a dead-letter queue to answer when
// the bus cannot say how many messages it holds; an empty queue answers
// nothing at all, so this ends the wait.
const Wait = 2 * time.Second

// countedWait bounds a receive from a dead-letter queue the bus has counted:
// the messages are there and come at once, unless one went meanwhile (an
// operator replayed it) or another listing holds it.
const countedWait = 30 * time.Second

// Peek reads up to limit messages of q's dead-letter queue, locked; the
// caller gives them back (GiveBack). A bus that counts its queues (the
// embedded one) says how many to read, so that neither an empty queue nor
// a busy machine is mistaken for the other; on another bus the read ends
// after wait without a message.
func Peek(ctx context.Context, bus ports.Consumer, q string, limit int, wait time.Duration) ([]*ports.Delivered, error) {
	want, patience := limit, wait
	if b, ok := bus.(ports.Backlog); ok {
		_, dead, err := b.Depth(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("count the dead-letter queue of %s: %w", q, err)
		}
		want, patience = min(limit, dead), countedWait
	}
	var out []*ports.Delivered
	for len(out) < want {
		w, cancel := context.WithTimeout(ctx, patience)
		msgs, err := bus.Receive(w, ports.DeadLetterQueue(q), want-len(out))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			break
		}
		if err != nil {
			GiveBack(ctx, bus, out)
			return nil, fmt.Errorf("read the dead-letter queue of %s: %w", q, err)
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// Browse reads up to limit messages of q's dead-letter queue for a
// listing. A bus that can browse (ports.Browser) reads them without a lock
// or a delivery counted, so a listing changes nothing; another is read as
// Peek reads it and the messages are given back at once, each read then
// counted as a delivery.
func Browse(ctx context.Context, bus ports.Consumer, q string, limit int, wait time.Duration) ([]*ports.Delivered, error) {
	if b, ok := bus.(ports.Browser); ok {
		msgs, err := b.Browse(ctx, ports.DeadLetterQueue(q), limit)
		if err != nil {
			return nil, fmt.Errorf("read the dead-letter queue of %s: %w", q, err)
		}
		return msgs, nil
	}
	msgs, err := Peek(ctx, bus, q, limit, wait)
	GiveBack(ctx, bus, msgs)
	return msgs, err
}

// GiveBack releases the locks of messages read from a dead-letter queue,
// skipping nil entries (messages already settled). They stay dead-lettered
// either way.
func GiveBack(ctx context.Context, bus ports.Consumer, msgs []*ports.Delivered) {
	for _, m := range msgs {
		if m != nil {
			_ = bus.Abandon(context.WithoutCancel(ctx), m)
		}
	}
}

// Replay publishes the dead-lettered message id of queue q to q again under
// a new id (the original id would be dropped by duplicate detection), then
// removes it from the dead-letter queue, and returns the new id. A bus
// that can take one message by its id (ports.Taker) is asked for that one
// alone; on another it looks for the message among the first limit of the
// dead-letter queue, each read counted as a delivery. It returns ENOTFOUND
// when the message is not there: never dead-lettered, replayed already, or
// held at that moment by another reader. A replay that
// published but could not remove the message returns an error, and the
// message, still dead-lettered, may be replayed again: the steps are
// idempotent, so a second copy changes nothing.
func Replay(ctx context.Context, bus ports.Bus, q, id string, limit int, wait time.Duration) (string, error) {
	var msgs []*ports.Delivered
	var err error
	if t, ok := bus.(ports.Taker); ok {
		// Only the message replayed is received, so the others' delivery
		// counts stay as they are.
		var m *ports.Delivered
		if m, err = t.Take(ctx, ports.DeadLetterQueue(q), id); domain.IsCode(err, domain.ENOTFOUND) {
			return "", domain.Errorf(domain.ENOTFOUND, "no message %s in the dead-letter queue of %s", id, q)
		}
		msgs = []*ports.Delivered{m}
	} else {
		msgs, err = Peek(ctx, bus, q, limit, wait)
	}
	if err != nil {
		return "", err
	}
	defer func() { GiveBack(ctx, bus, msgs) }()
	for i, m := range msgs {
		if m.ID != id {
			continue
		}
		again := m.Message
		again.Queue = q
		// A new id, so that duplicate detection does not drop the replay as
		// the message it copies; MessageID keeps it within the bus's bound.
		// A replay replayed again is named after the original, not after
		// the earlier replay, so ids do not grow with each replay.
		replay := strconv.FormatInt(time.Now().UnixNano(), 10)
		again.ID = wire.MessageID(unreplayed(m.ID), 0, "replay-"+replay)
		again.NotBefore = time.Time{}
		again.Body = freshStart(again.Body, replay)
		// Its step failed before; the replay reads what is stored now
		// rather than start from the versions it carried (ports.Versions).
		again.Versions = ""
		if err := bus.Publish(ctx, again); err != nil {
			return "", fmt.Errorf("replay %s: %w", id, err)
		}
		if err := bus.Complete(ctx, m); err != nil {
			return again.ID, fmt.Errorf("replayed %s as %s but could not remove it from the dead-letter queue: %w", id, again.ID, err)
		}
		msgs[i] = nil
		return again.ID, nil
	}
	return "", domain.Errorf(domain.ENOTFOUND, "no message %s among the first %d dead-lettered messages of %s", id, len(msgs), q)
}

// freshStart takes the count of attempts off a message's body (the
// "attempt" of wire.Envelope), so that its step tries the replay as often
// as a new message: an operator replays once the cause is mended, and a
// replay that kept attempt 7 of 8 would be given up after one more try
// (or none, a webhook whose circuit is still open). Since the count starts
// again, it marks the body as the replay (the "replay" of wire.Envelope),
// so that the retries the step sends are not named as the original's were
// (wire.Envelope.RetryStep). Other fields, known to this build or not, are
// kept; a body that is no JSON object, or no envelope (it names no
// operation), is left as it is.
func freshStart(body []byte, replay string) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return body
	}
	if _, ok := fields["operation"]; !ok {
		return body
	}
	delete(fields, "attempt")
	delete(fields, "throttledSince")
	fields["replay"], _ = json.Marshal(replay)
	out, err := json.Marshal(fields)
	if err != nil {
		return body
	}
	return out
}

// unreplayed is id without the ":replay-<n>" suffixes Replay gave it.
func unreplayed(id string) string {
	for {
		i := strings.LastIndex(id, ":replay-")
		if i < 0 {
			return id
		}
		n := id[i+len(":replay-"):]
		if n == "" || strings.Trim(n, "0123456789") != "" {
			return id
		}
		id = id[:i]
	}
}
