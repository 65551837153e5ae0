package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/fabrikam/dronedelivery/tools/simulator"
)

// simulate runs `dronedelivery simulate`: it flies every assigned drone of a
// running service over its public API, so that deliveries reach Completed
// and the tracking page moves without real aircraft.
func simulate(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	api := fs.String("api", "http://127.0.0.1:"+envOr(env, "PORT", "7071"), "base URL of the running service (env PORT sets the default port)")
	interval := fs.Duration("interval", time.Second, "how often each drone reports its position")
	scale := fs.Float64("time-scale", 10, "simulated seconds per real second: drones fly this much faster and stamp their reports accordingly")
	untilIdle := fs.Bool("until-idle", false, "exit once no drone has had a delivery to fly for a few intervals")
	// The key is read from the environment after parsing, not as the flag's
	// default, so that -h never prints it.
	key := fs.String("operator-key", "", "operator API key, sent as a bearer token (default: env OPERATOR_KEY, else the key serve -banner keeps in -data-dir)")
	dataDir := fs.String("data-dir", envOr(env, "DATA_DIR", ".data"), "folder of the service the simulator flies for, whose kept operator key it uses when none is given (env DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		*key = env("OPERATOR_KEY")
	}
	if *key == "" {
		kept, err := keptOperatorKey(*dataDir)
		if err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		if kept == "" {
			return fmt.Errorf("simulate: no operator key: set OPERATOR_KEY or -operator-key, or name the running service's data folder with -data-dir or DATA_DIR (no %s in %s)", operatorKeyFile, *dataDir)
		}
		*key = kept
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("simulate: unexpected argument %q", fs.Arg(0))
	}
	if *interval <= 0 {
		return fmt.Errorf("simulate: -interval must be positive, not %s", *interval)
	}
	if !(*scale > 0) || math.IsInf(*scale, 0) {
		return fmt.Errorf("simulate: -time-scale must be positive, not %g", *scale)
	}
	return simulator.Run(ctx, simulator.Options{
		BaseURL:     *api,
		Interval:    *interval,
		TimeScale:   *scale,
		Out:         stdout,
		OperatorKey: *key,
		UntilIdle:   *untilIdle,
	})
}
