package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err, p)
	return fi.Mode().Perm()
}

func TestFilesAreTheServiceUsersAlone(t *testing.T) {
	t.Parallel()
	for _, pre := range []struct {
		name    string
		prepare func(t *testing.T, dir, db string)
	}{
		{"a new folder", func(*testing.T, string, string) {}},
		{"a folder and files left open to others", func(t *testing.T, dir, db string) {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.Chmod(dir, 0o777))
			for _, p := range []string{db, db + "-wal", db + "-shm"} {
				require.NoError(t, os.WriteFile(p, nil, 0o644))
				require.NoError(t, os.Chmod(p, 0o666))
			}
		}},
	} {
		t.Run(pre.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			path := filepath.Join(dir, "dronedelivery.db")
			pre.prepare(t, dir, path)
			require.NoError(t, embedded.PrepareDir(dir))
			db, err := embedded.Open(path, embedded.Options{})
			require.NoError(t, err)
			defer db.Close()
			// A write makes SQLite create the -wal and -shm files.
			require.NoError(t, db.Bus().Publish(context.Background(), ports.Message{ID: "m", Queue: "q", Body: []byte("{}")}))
			assert.Equal(t, embedded.DirMode, mode(t, dir))
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				assert.Equal(t, embedded.FileMode, mode(t, p), p)
			}
		})
	}
}
