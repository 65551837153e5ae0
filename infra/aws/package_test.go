package aws

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackageLambdaZip runs `make package-lambda` into a temporary folder
// and inspects the zip as Lambda's provided.al2023 runtime uses it: one
// executable named bootstrap at the root, a static linux/amd64 ELF (the
// template's default architecture).
func TestPackageLambdaZip(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"make", "zip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("make package-lambda needs %s (Debian: apt-get install -y %s)", tool, tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	dist := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "package-lambda", "DIST="+dist)
	cmd.Dir = root
	// A make that runs `go test` passes its flags and jobserver down; the
	// nested make must start clean.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package-lambda: %v\n%s", err, out)
	}
	zr, err := zip.OpenReader(filepath.Join(dist, "lambda.zip"))
	require.NoError(t, err)
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		t.Fatalf("lambda.zip holds %v; want bootstrap alone at the root", names)
	}
	f := zr.File[0]
	if f.Mode()&0o111 == 0 {
		t.Errorf("bootstrap has mode %v; Lambda cannot start it without the executable bit", f.Mode())
	}
	rc, err := f.Open()
	require.NoError(t, err)
	raw, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	bin, err := elf.NewFile(bytes.NewReader(raw))
	require.NoError(t, err, "bootstrap is not an ELF executable")
	defer bin.Close()
	if bin.Class != elf.ELFCLASS64 || bin.Machine != elf.EM_X86_64 {
		t.Errorf("bootstrap is %v %v, want linux/amd64", bin.Class, bin.Machine)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bootstrap asks for a dynamic loader; provided.al2023 runs it as is only if built with CGO_ENABLED=0")
		}
	}
}
