package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The embedded backend's files hold webhook signing secrets, API key
// hashes and customers' addresses and telephone numbers, so only the
// service's own user may read them.
const (
	// DirMode is the data folder's mode.
	DirMode fs.FileMode = 0o700
	// FileMode is the mode of the SQLite file and of the -wal and -shm
	// files beside it (SQLite gives those the main file's mode).
	FileMode fs.FileMode = 0o600
)

// PrepareDir creates the data folder dir with DirMode, or tightens an
// existing one to it: a folder left readable by others from an earlier
// version, or made by hand, is closed rather than refused, since nothing
// but the service's files belongs in it.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	if err := tighten(dir, DirMode); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	return nil
}

// restrictFiles creates the database file with FileMode before SQLite
// opens it (SQLite would create it 0644), and tightens an existing one and
// its journal files to it.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := tighten(p, FileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// tighten removes from p's permission bits everything mode does not allow.
func tighten(p string, mode fs.FileMode) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^mode == 0 {
		return nil
	}
	return os.Chmod(p, fi.Mode().Perm()&mode)
}
