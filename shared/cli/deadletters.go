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

	"github.com/fabrikam/dronedelivery/shared/deadletter"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

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
	b, err := openExistingBackend(ctx, c, env, log)
	if err != nil {
		return err
	}
	defer b.Close()
	if *replay != "" {
		again, err := deadletter.Replay(ctx, b.Bus, *queue, *replay, *limit, deadletter.Wait)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %s to %s as %s\n", *replay, *queue, again)
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tMESSAGE ID\tDELIVERIES\tENQUEUED\tREASON\tDESCRIPTION\tBODY")
	total := 0
	for _, q := range queues {
		msgs, err := deadletter.Browse(ctx, b.Bus, q, *limit, deadletter.Wait)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", q, m.ID, m.DeliveryCount, m.EnqueuedAt.UTC().Format(time.RFC3339),
				m.DeadLetterReason, clip(m.DeadLetterDescription, 60), clip(string(m.Body), 80))
		}
		total += len(msgs)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead-lettered message(s)\n", total)
	return nil
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
