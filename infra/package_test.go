package infra

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPackageZip runs `make package` into a temporary directory and inspects
// the zip the way the Flex Consumption host will use it: host.json at the
// root, one folder per function, and the executable host.json names, built for
// linux/amd64 with no dynamic loader and marked executable (the platform
// extracts the zip as is; a file without the bit cannot be started).
func TestPackageZip(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the linux/amd64 binary; skipped with -short")
	}
	for _, tool := range []string{"make", "zip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("make package needs %s: apt-get install -y %s (make test-deps installs it)", tool, tool)
		}
	}
	root := repoRoot(t)
	dist := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "package", "DIST="+dist)
	cmd.Dir = root
	// A make that runs `go test` passes its flags and jobserver down; the
	// nested make must start clean.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make package\n%s", out)

	zr, err := zip.OpenReader(filepath.Join(dist, "app.zip"))
	require.NoError(t, err)
	defer zr.Close()
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[strings.TrimPrefix(f.Name, "./")] = f
	}

	hostFile, ok := entries["host.json"]
	require.True(t, ok, "app.zip has no host.json at its root; entries: %v", names(zr.File))
	var host struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	require.NoError(t, json.Unmarshal(read(t, hostFile), &host), "host.json in app.zip")
	wantHost, err := os.ReadFile(filepath.Join(root, "host.json"))
	require.NoError(t, err)
	assert.Equal(t, string(wantHost), string(read(t, hostFile)), "host.json in app.zip is the repository's")

	// One folder per function, each with the repository's function.json, and
	// no function.json the repository does not have.
	want, err := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	require.NoError(t, err)
	require.NotEmpty(t, want, "functions/*/function.json in the repository")
	for _, src := range want {
		name := filepath.Base(filepath.Dir(src)) + "/function.json"
		f, ok := entries[name]
		if !assert.True(t, ok, "app.zip has no %s", name) {
			continue
		}
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		assert.Equal(t, string(b), string(read(t, f)), "%s in app.zip is %s", name, src)
	}
	for name := range entries {
		if path.Base(name) == "function.json" && strings.Count(name, "/") != 1 {
			t.Errorf("app.zip has %s; function.json files belong one folder below the root", name)
		}
	}
	var functionJSON int
	for name := range entries {
		if path.Base(name) == "function.json" {
			functionJSON++
		}
	}
	assert.Len(t, want, functionJSON, "function.json files in the repository and in app.zip")
	assert.NotContains(t, entries, "local.settings.json", "app.zip carries local.settings.json, which holds local secrets")

	exe := path.Clean(host.CustomHandler.Description.DefaultExecutablePath)
	f, ok := entries[exe]
	require.True(t, ok, "host.json names executable %q, which app.zip does not contain", exe)
	if mode := f.Mode(); mode&0o111 == 0 {
		t.Errorf("%s has mode %v in app.zip; the host cannot start it without the executable bit", exe, mode)
	}
	bin, err := elf.NewFile(bytes.NewReader(read(t, f)))
	require.NoError(t, err, "%s is not an ELF executable", exe)
	defer bin.Close()
	if bin.Class != elf.ELFCLASS64 || bin.Machine != elf.EM_X86_64 {
		t.Errorf("%s is %v %v; the Flex Consumption workers are linux/amd64 (ELFCLASS64, EM_X86_64)", exe, bin.Class, bin.Machine)
	}
	if bin.Type != elf.ET_EXEC && bin.Type != elf.ET_DYN {
		t.Errorf("%s is an ELF %v, not an executable", exe, bin.Type)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for a dynamic loader; build it with CGO_ENABLED=0 so it runs on any Linux image", exe)
		}
	}
}

func read(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	require.NoError(t, err, "%s", f.Name)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err, "%s", f.Name)
	return b
}

func names(files []*zip.File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

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
	_, err = exec.LookPath("make")
	require.NoError(t, err, "the deploy tests run make, which make test itself needs")
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
