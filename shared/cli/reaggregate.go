package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// reaggregate re-derives one month's analytics from the deliveries accepted
// in it and replaces the maintained ones: a repair, for a month whose
// figures were lost or were kept by a build without them. With -check it
// writes nothing and compares the maintained figures with the re-derived
// ones, failing when any bucket differs.
func reaggregate(ctx context.Context, args []string, env func(string) string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("reaggregate", flag.ContinueOnError)
	var c common
	c.register(fs, env)
	monthFlag := fs.String("month", "", "the month to re-derive, as 2026-12 (required)")
	check := fs.Bool("check", false, "compare the maintained figures with the re-derived ones and write nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	month, err := time.Parse("2006-01", *monthFlag)
	if err != nil {
		return fmt.Errorf("-month %q: must be a month as 2026-12", *monthFlag)
	}
	b, err := openExistingBackend(ctx, c, env, log)
	if err != nil {
		return err
	}
	defer b.Close()
	an := b.Store.Analytics
	if an == nil {
		return errors.New("this backend keeps no analytics")
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "BUCKET\tCOUNT\tCOMPLETED\tCANCELLED\tFAILED\tON TIME\tDURATION MS\tTRAVELED M\tASSIGNED MS\tMAINTAINED")
	row := func(b string, f domain.Figures, note string) {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", b, f.Count, f.Completed, f.Cancelled, f.Failed, f.OnTime,
			f.DurationMs, f.TraveledM, f.AssignedMs, note)
	}
	if !*check {
		out, err := an.Reaggregate(ctx, month)
		if err != nil {
			return err
		}
		for _, b := range sortedBuckets(out) {
			row(b, out[b].Total, "replaced")
		}
		return nil
	}
	derived, err := an.Derive(ctx, month)
	if err != nil {
		return err
	}
	differ := 0
	for _, b := range sortedBuckets(derived) {
		kept, err := an.Month(ctx, b, month)
		if err != nil {
			return err
		}
		note := "agrees"
		if d := differences(kept, derived[b]); d != "" {
			note = "DIFFERS: " + d
			differ++
		}
		row(b, derived[b].Total, note)
	}
	if differ > 0 {
		w.Flush()
		return fmt.Errorf("%d of %d buckets of %s differ from the deliveries; run reaggregate -month %s to repair them",
			differ, len(derived), domain.MonthKey(month), domain.MonthKey(month))
	}
	return nil
}

// differences says where a bucket's kept figures differ from those derived
// from its deliveries: each day that differs (the first three), and in it
// each figure, kept then derived; "" when they agree.
func differences(kept, derived *domain.MonthFigures) string {
	var days []string
	for i := range max(len(kept.Days), len(derived.Days)) {
		var k, d domain.Figures
		if i < len(kept.Days) {
			k = kept.Days[i]
		}
		if i < len(derived.Days) {
			d = derived.Days[i]
		}
		if k == d {
			continue
		}
		if len(days) == 3 {
			days = append(days, "and more days")
			break
		}
		var figs []string
		for _, f := range []struct {
			name string
			k, d int64
		}{
			{"count", k.Count, d.Count}, {"completed", k.Completed, d.Completed}, {"cancelled", k.Cancelled, d.Cancelled},
			{"failed", k.Failed, d.Failed}, {"on time", k.OnTime, d.OnTime}, {"duration ms", k.DurationMs, d.DurationMs},
			{"traveled m", k.TraveledM, d.TraveledM}, {"assigned ms", k.AssignedMs, d.AssignedMs},
		} {
			if f.k != f.d {
				figs = append(figs, fmt.Sprintf("%s %d kept, %d derived", f.name, f.k, f.d))
			}
		}
		days = append(days, fmt.Sprintf("day %d: %s", i+1, strings.Join(figs, ", ")))
	}
	return strings.Join(days, "; ")
}

func sortedBuckets(m map[string]*domain.MonthFigures) []string {
	out := make([]string, 0, len(m))
	for b := range m {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}
