package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// holdCommitter occupies the committer with a write that waits until the
// returned function is called, so that writes queued meanwhile form one
// group behind it.
func holdCommitter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- db.commit.write(context.Background(), "hold", func(*writeTx) error {
			// Runs again, alone, if another write of its group fails.
			once.Do(func() { close(entered) })
			<-gate
			return nil
		})
	}()
	<-entered
	return func() {
		close(gate)
		require.NoError(t, <-done)
	}
}

// queueBehind runs write(0) to write(n-1) at once, calls release when all
// n wait behind the held committer, and returns their errors once every
// one has ended.
func queueBehind(db *DB, release func(), n int, write func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = write(i)
		}()
	}
	for pending(db) < n {
		runtime.Gosched()
	}
	release()
	wg.Wait()
	return errs
}

// createDelivery creates delivery d<i>.
func createDelivery(ctx context.Context, deliveries ports.Deliveries, i int) error {
	id := "d" + strconv.Itoa(i)
	return deliveries.Create(ctx, id, &domain.Delivery{ID: id, Stage: domain.StageCreated})
}

func TestConcurrentWritesShareACommit(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	deliveries := db.Store().Deliveries
	ctx := ctxFor(t)
	release := holdCommitter(t, db)
	before := db.Stats()
	errs := queueBehind(db, release, 20, func(i int) error { return createDelivery(ctx, deliveries, i) })
	for i, err := range errs {
		require.NoError(t, err, "write %d", i)
	}
	after := db.Stats()
	assert.Equal(t, int64(1), after.Commits-before.Commits, "the 20 writes queued behind a running one join its commit")
	assert.Equal(t, int64(21), after.Writes-before.Writes)
	for i := range 20 {
		_, err := deliveries.Find(ctx, "d"+strconv.Itoa(i))
		require.NoError(t, err, "every write of the group committed")
	}
}

func TestAFailingWriteDoesNotFailItsGroup(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	deliveries := db.Store().Deliveries
	ctx := ctxFor(t)
	boom := errors.New("boom")
	release := holdCommitter(t, db)
	errs := queueBehind(db, release, 10, func(i int) error {
		if i != 5 {
			return createDelivery(ctx, deliveries, i)
		}
		return db.commit.write(ctx, "fail", func(w *writeTx) error {
			// A real write first, which the rollback must undo.
			if _, err := w.stmt(db.st.docInsert).Exec(topology.ContainerDeliveries, "ghost", `{}`, 0); err != nil {
				return err
			}
			return boom
		})
	})
	for i, err := range errs {
		if i == 5 {
			assert.ErrorIs(t, err, boom)
			continue
		}
		assert.NoError(t, err, "write %d", i)
		_, err := deliveries.Find(ctx, "d"+strconv.Itoa(i))
		assert.NoError(t, err, "write %d committed", i)
	}
	_, err := deliveries.Find(ctx, "ghost")
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "the failed write left nothing behind: %v", err)
}

func TestAWriteWhoseContextEndedIsNotRun(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	release := holdCommitter(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- db.commit.write(ctx, "late", func(*writeTx) error { ran = true; return nil })
	}()
	for pending(db) < 1 {
		runtime.Gosched()
	}
	cancel()
	release()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.False(t, ran)
}

func TestWritesAfterCloseFail(t *testing.T) {
	t.Parallel()
	db, err := Open(t.TempDir()+"/x.db", Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	err = db.Store().Deliveries.Create(context.Background(), "d", &domain.Delivery{ID: "d"})
	assert.True(t, domain.IsCode(err, domain.EUNAVAILABLE), "%v", err)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestCompleteWithPublishesAndCompletesInOneWrite(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	bus := db.Bus()
	ctx := ctxFor(t)
	q, next := topology.QueueDeliveryRequests, topology.QueueDroneScheduled
	must(t, bus.Publish(ctx, ports.Message{ID: "m1", Queue: q, Body: []byte(`{}`)}), "publish")
	m := receive(t, bus, q, 1)[0]
	before := db.Stats()
	out := ports.Message{ID: "m1:next", Queue: next, Body: []byte(`{}`)}
	require.NoError(t, bus.CompleteWith(ctx, m, out))
	assert.Equal(t, int64(1), db.Stats().Commits-before.Commits)
	expectDepth(t, bus, q, 0, 0)
	got := receive(t, bus, next, 1)[0]
	assert.Equal(t, "m1:next", got.ID)

	// A lost lock still publishes, as a publish before a complete did: the
	// redelivered step's outputs are then duplicates the queue drops.
	require.NoError(t, bus.CompleteWith(ctx, got))
	err := bus.CompleteWith(ctx, got, ports.Message{ID: "m1:after", Queue: q, Body: []byte(`{}`)})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "%v", err)
	expectDepth(t, bus, q, 1, 0)

	err = bus.CompleteWith(ctx, m, ports.Message{ID: "x", Queue: ports.DeadLetterQueue(q)})
	assert.True(t, domain.IsCode(err, domain.EINVALID), "outputs are checked like a publish's: %v", err)
}

func TestCheckpointsRunBesideTheWriter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dronedelivery.db")
	db := mustOpenAt(t, path, Options{})
	var pages int
	require.NoError(t, db.w.QueryRowContext(ctxFor(t), "PRAGMA wal_autocheckpoint").Scan(&pages))
	assert.Equal(t, writerAutocheckpoint, pages, "the writer checkpoints only as a backstop")

	ctx := ctxFor(t)
	for i := range 200 {
		id := "d" + strconv.Itoa(i)
		require.NoError(t, db.Store().Deliveries.Create(ctx, id, &domain.Delivery{ID: id}))
	}
	// The background connection has been nudged; a checkpoint of its own
	// now finds nothing left to copy or copies the rest, never an error.
	var busy, logged, copied int
	require.NoError(t, db.ckpt.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &copied))
	assert.Zero(t, busy)
	assert.Equal(t, logged, copied, "every frame of the WAL is in the database file")

	// Checkpoint copies and empties the WAL, and the file still reads.
	require.NoError(t, db.Store().Deliveries.Create(ctx, "after", &domain.Delivery{ID: "after"}))
	require.NoError(t, db.Checkpoint(ctx))
	wal, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	assert.Zero(t, wal.Size(), "the WAL is emptied")
	got, err := db.Store().Deliveries.Find(ctx, "after")
	require.NoError(t, err)
	assert.Equal(t, "after", got.ID)
}

// pending is how many writes wait for a group.
func pending(db *DB) int {
	db.commit.mu.Lock()
	defer db.commit.mu.Unlock()
	return len(db.commit.queue)
}
