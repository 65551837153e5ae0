package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// A second make deploy under the same NAME with another LOCATION stops
// before it builds or changes anything, and says where the group is.
func TestADeployToAnotherLocationStopsFirst(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "az"), []byte(fakeAz), 0o755))
	azLog := filepath.Join(t.TempDir(), "az.log")
	dist := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "deploy", "NAME=mydrones", "LOCATION=eastus", "DIST="+dist,
		"HEALTH_TIMEOUT=1", "PUBLISH_TIMEOUT=5") // bounds, should it go on
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "AZ_LOG="+azLog,
		"OPERATOR_KEY=0123456789abcdef0123456789abcdef")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "resource group rg-mydrones is in westus, not LOCATION=eastus")
	calls, err := os.ReadFile(azLog)
	require.NoError(t, err)
	assert.NotContains(t, string(calls), "group create")
	assert.NotContains(t, string(calls), "deployment")
	entries, err := os.ReadDir(dist)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was packaged")
	assert.True(t, strings.Contains(string(calls), "group show --name rg-mydrones"), string(calls))
}

// make publish without a deployment to publish to says so, and sends the
// package nowhere.
func TestPublishWithoutADeploymentStops(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "az"), []byte(fakeAz), 0o755))
	azLog := filepath.Join(t.TempDir(), "az.log")
	dist := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dist, "app.zip"), []byte("zip"), 0o644))
	cmd := exec.Command("make", "--no-print-directory", "publish", "NAME=mydrones", "DIST="+dist, "HEALTH_TIMEOUT=1", "PUBLISH_TIMEOUT=5")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "AZ_LOG="+azLog)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "no deployment mydrones with a function app in resource group rg-mydrones")
	calls, err := os.ReadFile(azLog)
	require.NoError(t, err)
	assert.NotContains(t, string(calls), "config-zip")
}
