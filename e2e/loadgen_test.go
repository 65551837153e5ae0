package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// TestBenchCommandWritesItsReport runs `dronedelivery bench` briefly, as
// make bench does at length: it must start the server as a process of its
// own, get an API key, carry every accepted delivery to Scheduled and
// account for each in the report. No figure is asserted, only that the
// harness measured what it says it measured.
func TestBenchCommandWritesItsReport(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	cmd := exec.Command(binary, "bench", "-out", out, "-quiet",
		"-scenarios", "startup,baseline,e2e,e2e-max",
		"-startup-runs", "1", "-baseline-duration", "300ms",
		"-e2e-rate", "100", "-e2e-duration", "1s",
		"-max-duration", "1s", "-max-deliveries", "300", "-dispatch-fleet", "500",
		// The chain's drain ends as soon as every delivery is Scheduled; the
		// limit is for a hang, not for a busy machine.
		"-drain", "5m")
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONS_HTTPWORKER_PORT=")
	stdout, err := cmd.CombinedOutput()
	require.NoError(t, err, string(stdout))
	assert.Contains(t, string(stdout), "## Targets")

	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	require.NoError(t, err)
	var rep loadgen.Report
	require.NoError(t, json.Unmarshal(b, &rep))
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(stdout), string(md), "the markdown report is printed")

	runs := map[string]*loadgen.Result{}
	for _, r := range rep.Runs {
		runs[r.Name] = r
		assert.Zero(t, r.Failed, "%s: %v", r.Name, r.Errors)
	}
	e2e := runs["e2e-100/s"]
	require.NotNil(t, e2e)
	assert.Equal(t, "open", e2e.Mode)
	assert.Equal(t, int64(100), e2e.OK, "an open-loop second at 100/s is 100 requests")
	require.NotNil(t, runs["baseline-max"])
	require.NotNil(t, runs["e2e-max"])

	require.Len(t, rep.Completions, 2)
	for _, c := range rep.Completions {
		assert.Equal(t, c.Accepted, c.Completed, "%s: every accepted delivery reached Scheduled", c.Name)
		assert.Zero(t, c.Failed+c.Pending, c.Name)
		assert.Equal(t, int64(c.Completed), c.Latency.Count, c.Name)
	}
	assert.Equal(t, int(e2e.OK), rep.Completions[0].Accepted)

	require.Len(t, rep.Startups, 3)
	for _, s := range rep.Startups {
		assert.Equal(t, 1, s.Runs, s.Name)
		assert.Positive(t, s.MedianMs, s.Name)
	}
	measured := 0
	for _, tg := range rep.Targets {
		if tg.Measured {
			measured++
			assert.Contains(t, []string{"met", "NOT MET"}, tg.Status, tg.Name)
		}
	}
	assert.Equal(t, 6, measured, "every target but dispatch, which was not run, has a figure")
	assert.NotEmpty(t, rep.CPU)
}

// TestBenchDispatchScenarioMeasuresEachFleet runs the dispatch scenario on
// a small fleet: the spread fleet, the dense one and the dense one with its
// nearest half taken must each assign every delivery and fill their target
// row.
func TestBenchDispatchScenarioMeasuresEachFleet(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	cmd := exec.Command(binary, "bench", "-out", out, "-quiet", "-scenarios", "dispatch",
		"-dispatch-fleet", "2000", "-dispatch-count", "100")
	cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONS_HTTPWORKER_PORT=")
	stdout, err := cmd.CombinedOutput()
	require.NoError(t, err, string(stdout))

	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	require.NoError(t, err)
	var rep loadgen.Report
	require.NoError(t, json.Unmarshal(b, &rep))
	runs := map[string]*loadgen.Result{}
	for _, r := range rep.Runs {
		runs[r.Name] = r
	}
	for _, fleet := range []string{"2k drones", "2k drones within 5 km", "2k drones within 5 km, nearest half taken"} {
		for _, run := range []string{"dispatch ScheduleDrone, ", "dispatch ScheduleDrone in a unit of work, ", "dispatch search, spatial index, "} {
			r := runs[run+fleet]
			require.NotNil(t, r, run+fleet)
			assert.Equal(t, int64(100), r.OK, "%s%s: %v", run, fleet, r.Errors)
			assert.Zero(t, r.Failed, "%s%s: %v", run, fleet, r.Errors)
		}
		measured := false
		for _, tg := range rep.Targets {
			if tg.Name == "dispatch p99 per assignment, "+fleet {
				measured = tg.Measured && tg.BaselineValue > 0
			}
		}
		assert.True(t, measured, "target row for %s", fleet)
	}
}
