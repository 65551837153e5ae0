package embedded

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// TestFaultSwitchFailsWritesAndHeals: while the switch file exists every
// write is EUNAVAILABLE and changes nothing (a document, a publish, a
// receive's lock), reads go on; once it is gone the same DB writes again.
func TestFaultSwitchFailsWritesAndHeals(t *testing.T) {
	t.Parallel()
	sw := filepath.Join(t.TempDir(), "store-fault")
	db := MustOpen(t, Options{FaultSwitch: sw})
	ctx := context.Background()
	packages := db.Store().Packages
	require.NoError(t, packages.Create(ctx, "p1", &domain.Package{ID: "p1", Status: "Scheduled"}))
	require.NoError(t, db.Bus().Publish(ctx, ports.Message{ID: "m1", Queue: "q", Body: []byte(`{}`)}))

	require.NoError(t, os.WriteFile(sw, nil, 0o644))
	err := packages.Create(ctx, "p2", &domain.Package{ID: "p2"})
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "create: %v", err)
	assert.ErrorIs(t, err, ErrInjectedFault)
	err = db.Bus().Publish(ctx, ports.Message{ID: "m2", Queue: "q", Body: []byte(`{}`)})
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "publish: %v", err)
	_, err = db.Bus().Receive(ctx, "q", 1)
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "receive: %v", err)
	got, err := packages.Find(ctx, "p1")
	require.NoError(t, err, "reads go on")
	assert.Equal(t, "p1", got.ID)

	require.NoError(t, os.Remove(sw))
	_, err = packages.Find(ctx, "p2")
	assert.Equal(t, domain.ENOTFOUND, domain.ErrorCode(err), "the refused create wrote nothing")
	require.NoError(t, packages.Create(ctx, "p2", &domain.Package{ID: "p2"}))
	msgs, err := db.Bus().Receive(ctx, "q", 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1, "the refused publish queued nothing")
	assert.Equal(t, "m1", msgs[0].ID)
	assert.Equal(t, 1, msgs[0].DeliveryCount, "the refused receive counted no delivery")
}

// TestAFullDiskIsUnavailable: SQLite's "database or disk is full" is a
// dependency's unavailability (EUNAVAILABLE), as the fault switch makes
// it, so that ingest answers 503 and the queue steps retry on their
// schedule, instead of an internal error; a read-only file too. The file's
// size limit (max_page_count) stands in for the disk.
func TestAFullDiskIsUnavailable(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	ctx := context.Background()
	var pages int
	require.NoError(t, db.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages))
	require.NoError(t, db.w.QueryRowContext(ctx, "PRAGMA max_page_count = "+strconv.Itoa(pages+1)).Scan(&pages))
	packages := db.Store().Packages
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		id := "p" + strconv.Itoa(i)
		err = packages.Create(ctx, id, &domain.Package{ID: id, Status: strings.Repeat("x", 2000)})
	}
	require.Error(t, err, "the file filled up")
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "%v", err)
}
