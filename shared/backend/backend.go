// Package backend opens the store and bus the configuration names: with no
// cloud settings, the embedded backend (one SQLite file in a data folder).
package backend

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Backend is an open store and bus.
type Backend struct {
	Store ports.Store
	Bus   ports.Bus
	Name  string // a human description, for logs and banners
	close func() error
}

// Close releases the backend.
func (b *Backend) Close() error { return b.close() }

// OpenEmbedded opens (creating if needed) the embedded backend in dataDir.
func OpenEmbedded(dataDir string, opts embedded.Options) (*Backend, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	path := filepath.Join(dataDir, "dronedelivery.db")
	db, err := embedded.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	return &Backend{Store: db.Store(), Bus: db.Bus(), Name: "embedded SQLite at " + path, close: db.Close}, nil
}
