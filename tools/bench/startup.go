package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// startup times exec → first 200 on /api/healthz for the standalone server,
// the custom handler and the bare baseline, each on a fresh data folder.
func (b *benchRun) startup(ctx context.Context) error {
	kinds := []struct {
		name string
		opts func(addr, dir string) loadgen.StartOptions
	}{
		{"dronedelivery serve", func(addr, dir string) loadgen.StartOptions {
			return loadgen.StartOptions{Path: b.o.binary, Args: []string{"serve", "-addr", addr, "-data-dir", dir}, Env: b.serverEnv(randomHex(8))}
		}},
		{"dronedelivery as custom handler", func(addr, dir string) loadgen.StartOptions {
			_, port, _ := net.SplitHostPort(addr)
			return loadgen.StartOptions{Path: b.o.binary, Env: b.serverEnv(randomHex(8), "FUNCTIONS_CUSTOMHANDLER_PORT="+port, "DATA_DIR="+dir)}
		}},
		{"bare net/http baseline", func(addr, dir string) loadgen.StartOptions {
			return loadgen.StartOptions{Path: b.o.self, Args: []string{"bench", "-serve-baseline", addr}, Env: b.childEnv()}
		}},
	}
	for _, k := range kinds {
		var samples []time.Duration
		for run := range b.o.startupRuns {
			addr, err := loadgen.FreeAddr()
			if err != nil {
				return err
			}
			dir := filepath.Join(b.work, fmt.Sprintf("startup-%d", run))
			os.RemoveAll(dir)
			d, p, err := loadgen.TimeToReady(ctx, k.opts(addr, dir), "http://"+addr+"/api/healthz")
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			samples = append(samples, d)
			if run == 0 {
				// Idle: after start-up work such as the first GC has settled.
				time.Sleep(time.Second)
				if m, err := p.ReadMemory(); err == nil {
					b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: k.name, When: "idle after start-up, empty data folder", RSSMB: m.RSSMB, PeakMB: m.PeakMB})
				}
			}
			p.Stop(5 * time.Second)
		}
		s := loadgen.NewStartup(k.name, samples)
		b.rep.Startups = append(b.rep.Startups, s)
		b.say("   %-32s median %.1f ms (min %.1f, max %.1f) over %d runs", k.name, s.MedianMs, s.MinMs, s.MaxMs, s.Runs)
		if strings.HasPrefix(k.name, "bare") {
			b.baseStartMs = s.MedianMs
		}
	}
	return nil
}
