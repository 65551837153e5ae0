package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// deadLetterWait is how long a listing waits for a dead-letter queue to
// answer when the bus cannot say how many messages it holds; an empty queue
// answers nothing at all, so this ends the wait.
const deadLetterWait = 2 * time.Second

// countedWait bounds a receive from a dead-letter queue the bus has counted:
// the messages are there and come at once, unless one went meanwhile (an
// operator replayed it) or another listing holds it.
const countedWait = 30 * time.Second

// deadLetters lists the dead-lettered messages of the configured backend's
// queues, or replays one: the operator's tool for poison messages. Listing
// locks the messages only to read them and gives them straight back.
// Replaying publishes the message to its queue again under a new id (the
// original id would be dropped by duplicate detection), then removes it
// from the dead-letter queue.
func deadLetters(ctx context.Context, args []string, env func(string) string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	var c common
	c.register(fs, env)
	queue := fs.String("queue", "", "one queue (default: every queue)")
	replay := fs.String("replay", "", "the message id to replay (needs -queue)")
	limit := fs.Int("limit", 100, "messages listed per queue at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	queues := topology.Queues
	if *queue != "" {
		if _, ok := topology.QueueSpec(*queue); !ok {
			return fmt.Errorf("-queue %q is not one of %s", *queue, strings.Join(topology.Queues, ", "))
		}
		queues = []string{*queue}
	} else if *replay != "" {
		return errors.New("-replay needs -queue")
	}
	b, err := openBackend(ctx, c, env, log)
	if err != nil {
		return err
	}
	defer b.Close()
	if *replay != "" {
		return replayDeadLetter(ctx, b.Bus, *queue, *replay, *limit, stdout)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tMESSAGE ID\tDELIVERIES\tENQUEUED\tREASON\tDESCRIPTION\tBODY")
	total := 0
	for _, q := range queues {
		msgs, err := peekDeadLetters(ctx, b.Bus, q, *limit)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", q, m.ID, m.DeliveryCount, m.EnqueuedAt.UTC().Format(time.RFC3339),
				m.DeadLetterReason, clip(m.DeadLetterDescription, 60), clip(string(m.Body), 80))
		}
		giveBack(ctx, b.Bus, msgs)
		total += len(msgs)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead-lettered message(s)\n", total)
	return nil
}

// giveBack releases the locks of messages read from a dead-letter queue,
// skipping nil entries (messages already settled).
func giveBack(ctx context.Context, bus ports.Bus, msgs []*ports.Delivered) {
	for _, m := range msgs {
		if m != nil {
			_ = bus.Abandon(context.WithoutCancel(ctx), m) // it stays dead-lettered either way
		}
	}
}

// peekDeadLetters reads up to limit messages of q's dead-letter queue,
// locked; the caller gives them back. A bus that counts its queues (the
// embedded one) says how many to read, so that neither an empty queue nor
// a busy machine is mistaken for the other.
func peekDeadLetters(ctx context.Context, bus ports.Bus, q string, limit int) ([]*ports.Delivered, error) {
	want, patience := limit, deadLetterWait
	if b, ok := bus.(ports.Backlog); ok {
		_, dead, err := b.Depth(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("count the dead-letter queue of %s: %w", q, err)
		}
		want, patience = min(limit, dead), countedWait
	}
	var out []*ports.Delivered
	for len(out) < want {
		wait, cancel := context.WithTimeout(ctx, patience)
		msgs, err := bus.Receive(wait, ports.DeadLetterQueue(q), want-len(out))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			break
		}
		if err != nil {
			giveBack(ctx, bus, out)
			return nil, fmt.Errorf("read the dead-letter queue of %s: %w", q, err)
		}
		out = append(out, msgs...)
	}
	return out, nil
}

func replayDeadLetter(ctx context.Context, bus ports.Bus, q, id string, limit int, stdout io.Writer) error {
	msgs, err := peekDeadLetters(ctx, bus, q, limit)
	if err != nil {
		return err
	}
	defer func() { giveBack(ctx, bus, msgs) }()
	for i, m := range msgs {
		if m.ID != id {
			continue
		}
		again := m.Message
		again.Queue = q
		again.ID = fmt.Sprintf("%s:replay-%d", m.ID, time.Now().UnixNano())
		again.NotBefore = time.Time{}
		if err := bus.Publish(ctx, again); err != nil {
			return fmt.Errorf("replay %s: %w", id, err)
		}
		if err := bus.Complete(ctx, m); err != nil {
			return fmt.Errorf("replayed %s as %s but could not remove it from the dead-letter queue: %w", id, again.ID, err)
		}
		msgs[i] = nil
		fmt.Fprintf(stdout, "replayed %s to %s as %s\n", id, q, again.ID)
		return nil
	}
	return fmt.Errorf("no message %s among the first %d dead-lettered messages of %s", id, len(msgs), q)
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
