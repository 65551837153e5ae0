package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goTest runs go test in the probe module (testdata/probe: packages that
// pass, fail, have no tests and do not build) and returns its standard
// output and error. The probe fails on purpose, so the exit status is not
// checked.
func goTest(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"test", "-count=1"}, append(args, "./...")...)...)
	cmd.Dir = "testdata/probe"
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "go test of the probe fails, on purpose:\n%s%s", out.String(), errs.String())
	return out.String(), errs.String()
}

// times are the only thing that differs between two runs.
var times = regexp.MustCompile(`\d+\.\d+s`)

func TestWritesWhatGoTestWrites(t *testing.T) {
	t.Parallel()
	wantOut, wantErr := goTest(t)
	stream, _ := goTest(t, "-json")

	var out, errs bytes.Buffer
	r := newReport(&out, &errs)
	require.NoError(t, r.read(strings.NewReader(stream)))

	assert.Equal(t, times.ReplaceAllString(wantOut, "T"), times.ReplaceAllString(out.String(), "T"), "standard output")
	assert.Equal(t, wantErr, errs.String(), "build errors, on standard error")
	assert.Contains(t, out.String(), "--- FAIL: TestFails/deeper/worse")
	assert.True(t, strings.HasSuffix(out.String(), "\nFAIL\n"), "the closing FAIL")
}

func TestListsTheSlowestTopLevelTests(t *testing.T) {
	t.Parallel()
	stream := strings.Join([]string{
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"run","Package":"m/a","Test":"TestQuick"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestQuick","Elapsed":0.01}`,
		`{"Action":"run","Package":"m/a","Test":"TestSlow"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestSlow/part","Elapsed":41.5}`,
		`{"Action":"pass","Package":"m/a","Test":"TestSlow","Elapsed":42}`,
		`{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t42.1s\n"}`,
		`{"Action":"pass","Package":"m/a","Elapsed":42.1}`,
		`{"Action":"start","Package":"m/b"}`,
		`{"Action":"fail","Package":"m/b","Test":"TestMiddling","Elapsed":3.25}`,
		`{"Action":"pass","Package":"m/b","Test":"TestSkipped","Elapsed":0}`,
		`{"Action":"output","Package":"m/b","Output":"FAIL\tm/b\t3.3s\n"}`,
		`{"Action":"fail","Package":"m/b","Elapsed":3.3}`,
	}, "\n")
	var out bytes.Buffer
	r := newReport(&out, &out)
	require.NoError(t, r.read(strings.NewReader(stream)))
	assert.Equal(t, "ok  \tm/a\t42.1s\nFAIL\tm/b\t3.3s\nFAIL\n", out.String())
	assert.Equal(t, "\nThe 3 slowest tests:\n"+
		"    42.00s  a  TestSlow\n"+
		"     3.25s  b  TestMiddling\n"+
		"     0.01s  a  TestQuick\n", r.slowest(3), "subtests are inside their test's time; packages without the path they share")
	assert.Empty(t, r.slowest(0))
}

func TestPackagesAreWrittenInTheOrderTheyStarted(t *testing.T) {
	t.Parallel()
	stream := strings.Join([]string{
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"start","Package":"m/b"}`,
		`{"Action":"output","Package":"m/b","Output":"ok  \tm/b\t0.1s\n"}`,
		`{"Action":"pass","Package":"m/b","Elapsed":0.1}`,
		`{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.2s\n"}`,
		`{"Action":"pass","Package":"m/a","Elapsed":0.2}`,
	}, "\n")
	var out bytes.Buffer
	require.NoError(t, newReport(&out, &out).read(strings.NewReader(stream)))
	assert.Equal(t, "ok  \tm/a\t0.2s\nok  \tm/b\t0.1s\n", out.String())
}

// TestAnUnfinishedTestIsShown: when the stream ends in the middle of a
// package (go test was killed, or a test panicked), what it said so far is
// shown, and the run counts as failed.
func TestAnUnfinishedTestIsShown(t *testing.T) {
	t.Parallel()
	stream := strings.Join([]string{
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"run","Package":"m/a","Test":"TestHangs"}`,
		`{"Action":"output","Package":"m/a","Test":"TestHangs","Output":"=== RUN   TestHangs\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestHangs","Output":"panic: test timed out after 20m0s\n"}`,
		`not json: passed through`,
	}, "\n")
	var out bytes.Buffer
	require.NoError(t, newReport(&out, &out).read(strings.NewReader(stream)))
	assert.Equal(t, "not json: passed through\npanic: test timed out after 20m0s\nFAIL\n", out.String())
}
