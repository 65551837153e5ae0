package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeAz is an az that answers as a signed-in CLI 2.60 would, finds the
// resource group in westus, and writes every call it gets to a log.
const fakeAz = `#!/bin/sh
echo "$*" >> "$AZ_LOG"
case "$1 $2" in
"version "*) echo 2.60.0 ;;
"group show") echo westus ;;
esac
`

// makeWithFakeAz runs make with args (and bounds on its waits, should it
// go on) in the repository, fakeAz first on the PATH; it returns what make
// printed, the az calls made, and its error.
func makeWithFakeAz(t *testing.T, args ...string) (out, calls string, err error) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "az"), []byte(fakeAz), 0o755))
	azLog := filepath.Join(t.TempDir(), "az.log")
	cmd := exec.Command("make", append([]string{"--no-print-directory", "NAME=mydrones", "HEALTH_TIMEOUT=1", "PUBLISH_TIMEOUT=5"}, args...)...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "AZ_LOG="+azLog,
		"OPERATOR_KEY=0123456789abcdef0123456789abcdef")
	b, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(azLog)
	return string(b), string(log), err
}

// A second make deploy under the same NAME with another LOCATION stops
// before it builds or changes anything, and says where the group is.
func TestADeployToAnotherLocationStopsFirst(t *testing.T) {
	dist := t.TempDir()
	out, calls, err := makeWithFakeAz(t, "deploy", "LOCATION=eastus", "DIST="+dist)
	require.Error(t, err, out)
	assert.Contains(t, out, "resource group rg-mydrones is in westus, not LOCATION=eastus")
	assert.Contains(t, calls, "group show --name rg-mydrones")
	assert.NotContains(t, calls, "group create")
	assert.NotContains(t, calls, "deployment")
	entries, err := os.ReadDir(dist)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was packaged")
}

// make publish without a deployment to publish to says so, and sends the
// package nowhere.
func TestPublishWithoutADeploymentStops(t *testing.T) {
	dist := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dist, "app.zip"), []byte("zip"), 0o644))
	out, calls, err := makeWithFakeAz(t, "publish", "DIST="+dist)
	require.Error(t, err, out)
	assert.Contains(t, out, "no deployment mydrones with a function app in resource group rg-mydrones")
	assert.NotContains(t, calls, "config-zip")
}
