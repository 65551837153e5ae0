package embedded

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
)

// MustOpen opens a database in a fresh temporary directory and closes it
// when the test ends.
func MustOpen(tb testing.TB, opts Options) *DB {
	tb.Helper()
	return mustOpenAt(tb, filepath.Join(tb.TempDir(), "dronedelivery.db"), opts)
}

func mustOpenAt(tb testing.TB, path string, opts Options) *DB {
	tb.Helper()
	db, err := Open(path, opts)
	require.NoError(tb, err, "open %s", path)
	tb.Cleanup(func() {
		assert.NoError(tb, db.Close(), "close %s", path)
	})
	return db
}

func busOptions(o porttest.BusOptions) Options {
	return Options{LockDuration: o.LockDuration, MaxDeliveryCount: o.MaxDeliveryCount}
}

func TestStore(t *testing.T) {
	t.Parallel()
	porttest.Store(t, func(t *testing.T) ports.Store { return MustOpen(t, Options{}).Store() })
}

func TestBus(t *testing.T) {
	t.Parallel()
	porttest.Bus(t, func(t *testing.T, o porttest.BusOptions) ports.Bus { return MustOpen(t, busOptions(o)).Bus() })
}

// TestSharedBackend runs the suites against one file per option set, as
// they promise to allow, so every test also contends with all the others
// for the single writer.
func TestSharedBackend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	dbs := map[porttest.BusOptions]*DB{}
	shared := func(o porttest.BusOptions) *DB {
		mu.Lock()
		defer mu.Unlock()
		if dbs[o] == nil {
			dbs[o] = MustOpen(t, busOptions(o))
		}
		return dbs[o]
	}
	porttest.SharedStore(t, func(*testing.T) ports.Store { return shared(porttest.BusOptions{}).Store() })
	t.Run("Bus", func(t *testing.T) {
		t.Parallel()
		porttest.Bus(t, func(_ *testing.T, o porttest.BusOptions) ports.Bus { return shared(o).Bus() })
	})
}

// patience bounds every wait for the database: only a hang reaches it.
const patience = time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}

// waitForReceiver waits until a Receive of queue through b is under way,
// so that what the test does next happens while it waits.
func waitForReceiver(t *testing.T, b *Bus, queue string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.wake[queue] != nil
	}, patience, time.Millisecond, "a receiver of %s", queue)
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	require.NoError(t, err, what)
}

func receive(t *testing.T, b *Bus, queue string, n int) []*ports.Delivered {
	t.Helper()
	ctx := ctxFor(t)
	var out []*ports.Delivered
	for len(out) < n {
		msgs, err := b.Receive(ctx, queue, n-len(out))
		must(t, err, fmt.Sprintf("receive %d of %d from %s", len(out), n, queue))
		out = append(out, msgs...)
	}
	return out
}

func expectDepth(t *testing.T, b *Bus, queue string, active, dead int) {
	t.Helper()
	a, d, err := b.Depth(ctxFor(t), queue)
	must(t, err, "depth")
	require.Equal(t, active, a, "active messages in %s", queue)
	require.Equal(t, dead, d, "dead-lettered messages in %s", queue)
}

func testDrone(id string, lat, lon float64) *domain.Drone {
	loc := domain.Location{Latitude: lat, Longitude: lon}
	return &domain.Drone{ID: id, Location: loc, HomeBase: loc, MaxPayloadKg: 5, MaxPackageSize: domain.SizeLarge,
		RangeKm: 40, CruiseSpeedMps: 20, BatteryPercent: 90, Status: domain.DroneAvailable}
}

func nearestIDs(ctx context.Context, f ports.Fleet, loc domain.Location) []string {
	var ids []string
	for d := range f.NearestAvailable(ctx, loc) {
		ids = append(ids, d.ID)
	}
	return ids
}

// endLock ends the lock of the message id on queue now, as its running out
// would: a locked message's visible_at is its lock's end.
func endLock(t *testing.T, db *DB, queue, id string) {
	t.Helper()
	must(t, db.commit.write(ctxFor(t), "end a lock", func(w *writeTx) error {
		res, err := w.tx.Exec(`UPDATE messages SET visible_at = ? WHERE queue = ? AND id = ? AND lock_token IS NOT NULL`, time.Now().UnixNano(), queue, id)
		if err != nil {
			return err
		}
		if n := affected(res, nil); n != 1 {
			return fmt.Errorf("%d locked messages %s on %s, want 1", n, id, queue)
		}
		return nil
	}), "end the lock of "+id)
}

func TestReopenKeepsDocumentsAndMessages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	// A lock far longer than the test: the dead-letter and the abandon
	// below find their locks held however slow the machine, and "locked"
	// is still locked after the reopen, until the test ends its lock.
	opts := Options{LockDuration: time.Minute}
	ctx := ctxFor(t)

	db, err := Open(path, opts)
	must(t, err, "open")
	store, bus := db.Store(), db.Bus()
	must(t, store.Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", Stage: domain.StageCreated}), "create delivery")
	must(t, store.Packages.Create(ctx, "p1", &domain.Package{ID: "p1", DeliveryID: "d1"}), "create package")
	must(t, store.Fleet.Create(ctx, "drone-1", testDrone("drone-1", 47.6, -122.3)), "create drone")
	must(t, store.Fleet.Create(ctx, "drone-2", testDrone("drone-2", 47.7, -122.3)), "create drone")
	_, err = store.Fleet.Update(ctx, "drone-2", func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "d1"
		return nil
	})
	must(t, err, "claim drone")
	must(t, bus.Publish(ctx,
		ports.Message{ID: "now", Queue: "q", Body: []byte(`1`), CorrelationID: "c1", Operation: "delivery"},
		ports.Message{ID: "locked", Queue: "q", Body: []byte(`3`)},
		ports.Message{ID: "poison", Queue: "q", Body: []byte(`4`)},
	), "publish")
	got := receive(t, bus, "q", 3) // now, locked, poison
	must(t, bus.DeadLetter(ctx, got[2], "Poison", "cannot parse"), "dead-letter")
	must(t, bus.Abandon(ctx, got[0]), "abandon")
	// Published after the receive, which therefore cannot take it however
	// late it runs.
	must(t, bus.Publish(ctx, ports.Message{ID: "later", Queue: "q", Body: []byte(`2`), NotBefore: time.Now().Add(300 * time.Millisecond)}), "publish later")
	must(t, db.Close(), "close")

	db = mustOpenAt(t, path, opts)
	store, bus = db.Store(), db.Bus()
	d, err := store.Deliveries.Find(ctx, "d1")
	require.NoError(t, err, "delivery after reopen")
	require.Equal(t, domain.StageCreated, d.Stage, "delivery after reopen")
	_, err = store.Packages.Find(ctx, "p1")
	require.NoError(t, err, "package after reopen")
	require.Equal(t, "drone-1", strings.Join(nearestIDs(ctx, store.Fleet, domain.Location{Latitude: 47.6, Longitude: -122.3}), ","),
		"available drones after reopen")
	expectDepth(t, bus, "q", 3, 1)

	// "locked" keeps its lock across the reopen, so the other two come
	// first ("later" once its delay is over); when its lock ends it comes
	// back. Ending the lock with a write, rather than giving it a short
	// one, spares the settlements above a race with it.
	var ids []string
	var maxSeq int64
	settle := func(msgs []*ports.Delivered) {
		for _, m := range msgs {
			ids = append(ids, fmt.Sprintf("%s#%d", m.ID, m.DeliveryCount))
			maxSeq = max(maxSeq, m.SequenceNumber)
			must(t, bus.Complete(ctx, m), "complete")
		}
	}
	settle(receive(t, bus, "q", 2))
	require.Equal(t, "now#2,later#1", strings.Join(ids, ","), "received after reopen while \"locked\" is locked")
	endLock(t, db, "q", "locked")
	settle(receive(t, bus, "q", 1))
	require.Equal(t, "now#2,later#1,locked#2", strings.Join(ids, ","), "received after reopen")
	dead := receive(t, bus, ports.DeadLetterQueue("q"), 1)[0]
	require.Equal(t, "poison", dead.ID, "dead-lettered after reopen")
	require.Equal(t, "Poison", dead.DeadLetterReason, "dead-lettered after reopen")
	require.Equal(t, "cannot parse", dead.DeadLetterDescription, "dead-lettered after reopen")
	maxSeq = max(maxSeq, dead.SequenceNumber)
	must(t, bus.Complete(ctx, dead), "complete dead-lettered")

	// Sequence numbers keep increasing even once every message is gone.
	must(t, db.Close(), "close")
	db = mustOpenAt(t, path, opts)
	must(t, db.Bus().Publish(ctx, ports.Message{ID: "next", Queue: "q"}), "publish after reopen")
	require.Greater(t, receive(t, db.Bus(), "q", 1)[0].SequenceNumber, maxSeq, "sequence number after reopen")
}

func TestSecondOpenSharesTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	opts := Options{PollInterval: 20 * time.Millisecond}
	a, b := mustOpenAt(t, path, opts), mustOpenAt(t, path, opts)
	ctx := ctxFor(t)

	// b cannot be woken by a's publish, only by polling the file.
	got := make(chan []*ports.Delivered, 1)
	go func() {
		msgs, err := b.Bus().Receive(ctx, "q", 10)
		assert.NoError(t, err, "receive through the second handle")
		got <- msgs
	}()
	waitForReceiver(t, b.Bus(), "q")
	must(t, a.Bus().Publish(ctx, ports.Message{ID: "m1", Queue: "q", Body: []byte(`{}`)}), "publish")
	msgs := <-got
	require.Len(t, msgs, 1, "second handle received")
	require.Equal(t, "m1", msgs[0].ID, "second handle received")
	must(t, b.Bus().Complete(ctx, msgs[0]), "complete through the second handle")
	expectDepth(t, a.Bus(), "q", 0, 0)

	// Optimistic concurrency holds across handles.
	must(t, a.Store().Deliveries.Create(ctx, "d", &domain.Delivery{ID: "d"}), "create")
	var wg sync.WaitGroup
	for _, db := range []*DB{a, b, a, b} {
		wg.Go(func() {
			for range 25 {
				_, err := db.Store().Deliveries.Update(ctx, "d", func(d *domain.Delivery) error {
					d.ScheduleAttempts++
					return nil
				})
				if !assert.NoError(t, err, "update") {
					return
				}
			}
		})
	}
	wg.Wait()
	d, err := b.Store().Deliveries.Find(ctx, "d")
	must(t, err, "find")
	require.Equal(t, 100, d.ScheduleAttempts, "ScheduleAttempts after 100 updates through two handles")

	// A claim through one handle is not in the other's index until reopen,
	// as documented; the re-check in Update is what keeps dispatch right.
	must(t, a.Store().Fleet.Create(ctx, "drone", testDrone("drone", 10, 10)), "create drone")
	_, err = b.Store().Fleet.Update(ctx, "drone", func(d *domain.Drone) error {
		d.Status, d.CurrentDeliveryID = domain.DroneAssigned, "d"
		return nil
	})
	must(t, err, "claim through the second handle")
	for d := range a.Store().Fleet.NearestAvailable(ctx, domain.Location{Latitude: 10, Longitude: 10}) {
		cur, err := a.Store().Fleet.Find(ctx, d.ID)
		must(t, err, "re-check")
		require.Equal(t, domain.DroneAssigned, cur.Status, "re-check through the first handle")
	}
}

// TestCrossProcess has a second process publish and update the same file
// while this one does too; the file's locks, not this process's mutexes,
// must keep them apart.
func TestCrossProcess(t *testing.T) {
	t.Parallel()
	const perProcess = 300
	const updates = perProcess / crossProcessBatch
	path := filepath.Join(t.TempDir(), "db")
	db := mustOpenAt(t, path, Options{PollInterval: 20 * time.Millisecond})
	ctx := ctxFor(t)
	must(t, db.Store().Deliveries.Create(ctx, "shared", &domain.Delivery{ID: "shared"}), "create")

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrossProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperCountEnv+"="+strconv.Itoa(perProcess))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start(), "start helper process")

	seen := map[string]int{}
	var wg sync.WaitGroup
	wg.Go(func() { crossProcessWork(t, db, "parent", perProcess) })
	for len(seen) < 2*perProcess {
		msgs, err := db.Bus().Receive(ctx, "xproc", 50)
		if err != nil {
			cmd.Wait() // output is safe to read only once the process is gone
		}
		require.NoError(t, err, "receive after %d messages\nhelper process: %s", len(seen), out)
		for _, m := range msgs {
			seen[m.ID]++
			must(t, db.Bus().Complete(ctx, m), "complete")
		}
	}
	wg.Wait()
	require.NoError(t, cmd.Wait(), "helper process: %s", out)
	for id, n := range seen {
		assert.Equal(t, 1, n, "times %s was received", id)
	}
	d, err := db.Store().Deliveries.Find(ctx, "shared")
	must(t, err, "find")
	require.Equal(t, 2*updates, d.ScheduleAttempts, "ScheduleAttempts after %d updates from two processes", 2*updates)
	expectDepth(t, db.Bus(), "xproc", 0, 0)
}

const (
	helperEnv      = "EMBEDDED_TEST_HELPER_DB"
	helperCountEnv = "EMBEDDED_TEST_HELPER_COUNT"
)

// TestCrossProcessHelper is the second process of TestCrossProcess; run
// directly it has nothing to do.
func TestCrossProcessHelper(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	n, err := strconv.Atoi(os.Getenv(helperCountEnv))
	must(t, err, "message count")
	crossProcessWork(t, mustOpenAt(t, path, Options{}), "helper", n)
}

const crossProcessBatch = 10

// crossProcessWork publishes n messages in small batches, each followed by
// an update of the shared delivery.
func crossProcessWork(t *testing.T, db *DB, who string, n int) {
	ctx := ctxFor(t)
	for i := 0; i < n; i += crossProcessBatch {
		var msgs []ports.Message
		for j := i; j < min(i+crossProcessBatch, n); j++ {
			msgs = append(msgs, ports.Message{ID: fmt.Sprintf("%s-%d", who, j), Queue: "xproc", Body: []byte(`{}`)})
		}
		if !assert.NoError(t, db.Bus().Publish(ctx, msgs...), "%s publish", who) {
			return
		}
		_, err := db.Store().Deliveries.Update(ctx, "shared", func(d *domain.Delivery) error {
			d.ScheduleAttempts++
			return nil
		})
		if !assert.NoError(t, err, "%s update", who) {
			return
		}
	}
}

func TestLockExpiryAtMaxDeliveryCountDeadLetters(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{LockDuration: 100 * time.Millisecond, MaxDeliveryCount: 1})
	bus := db.Bus()
	ctx := ctxFor(t)
	must(t, bus.Publish(ctx, ports.Message{ID: "m", Queue: "q"}), "publish")
	first := receive(t, bus, "q", 1)[0]

	// The lock lapses with the only delivery used up: the next receive
	// moves the message to the dead-letter queue instead of delivering it,
	// and goes on waiting for another until it is called off.
	type result struct {
		msgs []*ports.Delivered
		err  error
	}
	waiting, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan result, 1)
	go func() {
		msgs, err := bus.Receive(waiting, "q", 1)
		done <- result{msgs, err}
	}()
	require.Eventually(t, func() bool {
		active, dead, err := bus.Depth(ctx, "q")
		return err == nil && active == 0 && dead == 1 || len(done) > 0
	}, patience, 5*time.Millisecond, "the message dead-lettered or the receive returned")
	stop()
	r := <-done
	require.Empty(t, r.msgs, "receive after the last lock lapsed: want none until it was called off")
	require.ErrorIs(t, r.err, context.Canceled, "receive after the last lock lapsed: want none until it was called off")
	dead := receive(t, bus, ports.DeadLetterQueue("q"), 1)[0]
	require.Equal(t, "m", dead.ID, "dead-lettered")
	require.Equal(t, ReasonMaxDeliveryCountExceeded, dead.DeadLetterReason, "dead-lettered")
	require.NotEmpty(t, dead.DeadLetterDescription, "dead-lettered")
	err := bus.Complete(ctx, first)
	require.Equal(t, domain.ECONFLICT, domain.ErrorCode(err), "complete with the lapsed lock: %v", err)
	expectDepth(t, bus, "q", 0, 1)
}

func TestDuplicateWindowExpires(t *testing.T) {
	t.Parallel()
	const window = time.Second
	db := MustOpen(t, Options{DuplicateWindow: window})
	bus := db.Bus()
	ctx := ctxFor(t)

	// A duplicate is dropped when it comes within the window. Whether it did
	// is measured, not assumed: on a machine too busy to send it in time the
	// pair is tried again under fresh ids.
	var a, b string
	var sent time.Time // the ids' window began before this
	for try := 0; ; try++ {
		require.Less(t, try, 20, "not once were two publishes less than %s apart", window)
		a, b = fmt.Sprintf("a%d", try), fmt.Sprintf("b%d", try)
		before, _, err := bus.Depth(ctx, "q")
		must(t, err, "depth")
		start := time.Now()
		must(t, bus.Publish(ctx, ports.Message{ID: a, Queue: "q"}, ports.Message{ID: b, Queue: "q"}), "publish")
		sent = time.Now()
		must(t, bus.Publish(ctx, ports.Message{ID: a, Queue: "q"}), "publish a duplicate")
		within := time.Since(start) < window
		after, _, err := bus.Depth(ctx, "q")
		must(t, err, "depth")
		if within {
			require.Equal(t, before+2, after, "the duplicate of %s, sent within the window, was kept", a)
			break
		}
	}
	active, _, err := bus.Depth(ctx, "q")
	must(t, err, "depth")

	// The window is a span of the clock: wait for the clock, then the same
	// id is new again.
	waitUntil(sent.Add(window))
	must(t, bus.Publish(ctx, ports.Message{ID: a, Queue: "q"}), "publish after the window")
	expectDepth(t, bus, "q", active+1, 0)
	// That publish also forgot the expired ids it had not reused.
	var n int
	must(t, db.r.QueryRowContext(ctx, `SELECT count(*) FROM message_ids WHERE id = ?`, b).Scan(&n), "count ids")
	require.Zero(t, n, "the expired id %s is still remembered", b)
}

// waitUntil returns once the clock has passed at: for a test about a span
// of time, the condition is the clock itself.
func waitUntil(at time.Time) {
	for d := time.Until(at); d >= 0; d = time.Until(at) {
		time.Sleep(d + time.Millisecond)
	}
}

func TestPublishRejectsDeadLetterQueue(t *testing.T) {
	t.Parallel()
	bus := MustOpen(t, Options{}).Bus()
	err := bus.Publish(ctxFor(t), ports.Message{ID: "x", Queue: ports.DeadLetterQueue("q")})
	require.Equal(t, domain.EINVALID, domain.ErrorCode(err), "publish to a dead-letter queue: %v", err)
}

func TestDepthCountsEveryPendingMessage(t *testing.T) {
	t.Parallel()
	bus := MustOpen(t, Options{}).Bus()
	ctx := ctxFor(t)
	must(t, bus.Publish(ctx,
		ports.Message{ID: "a", Queue: "q"},
		ports.Message{ID: "b", Queue: "q"},
		ports.Message{ID: "c", Queue: "q", NotBefore: time.Now().Add(time.Hour)},
	), "publish")
	expectDepth(t, bus, "q", 3, 0)
	got := receive(t, bus, "q", 2)
	expectDepth(t, bus, "q", 3, 0)
	must(t, bus.DeadLetter(ctx, got[0], "r", "d"), "dead-letter")
	must(t, bus.Complete(ctx, got[1]), "complete")
	expectDepth(t, bus, "q", 1, 1)
}

func TestCloseWakesReceivers(t *testing.T) {
	t.Parallel()
	db, err := Open(filepath.Join(t.TempDir(), "db"), Options{PollInterval: time.Hour})
	must(t, err, "open")
	done := make(chan error, 1)
	go func() {
		_, err := db.Bus().Receive(context.Background(), "q", 1)
		done <- err
	}()
	waitForReceiver(t, db.Bus(), "q")
	must(t, db.Close(), "close")
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrClosed, "receive after close")
		require.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "receive after close: %v", err)
	case <-time.After(patience):
		require.FailNow(t, "receive did not return after close")
	}
	_, err = db.Store().Deliveries.Find(context.Background(), "x")
	require.ErrorIs(t, err, ErrClosed, "find after close")
}

func TestFleetIndexHoldsOnlyDispatchableDrones(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	fleet := db.Store().Fleet
	ctx := ctxFor(t)
	here := domain.Location{Latitude: 1, Longitude: 1}
	must(t, fleet.Create(ctx, "free", testDrone("free", 1, 1.01)), "create")
	odd := testDrone("odd", 1, 1)
	odd.CurrentDeliveryID = "d" // Available on paper but still carrying a delivery
	must(t, fleet.Create(ctx, "odd", odd), "create")
	require.Equal(t, "free", strings.Join(nearestIDs(ctx, fleet, here), ","), "yielded, want only free")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.Empty(t, nearestIDs(cancelled, fleet, here), "yielded under a cancelled context")

	// Commits may be reported out of order; the older one must not win.
	f := db.fleet
	stale := testDrone("free", 1, 1.01)
	stale.Status = domain.DroneCharging
	f.track("free", 0, stale)
	require.Equal(t, "free", strings.Join(nearestIDs(ctx, fleet, here), ","), "a stale write changed the index")
	require.Equal(t, 1, f.index.Len(), "drones the index holds")
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "1", "busy_timeout": "5000"} {
		var got string
		must(t, db.w.QueryRowContext(ctxFor(t), "PRAGMA "+pragma).Scan(&got), pragma)
		assert.Equal(t, want, got, "PRAGMA %s", pragma)
	}
}

// TestQueriesUseIndexes guards the plans the hot paths depend on: a SCAN of
// documents or messages would turn each call into a walk of the whole file.
func TestQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db := MustOpen(t, Options{})
	for query, index := range map[string]string{
		`SELECT body FROM documents WHERE ` + dronesWhere + ` AND status = 'Available' AND id > '' ORDER BY id LIMIT 10`:  "documents_drone_status",
		`SELECT id, version, body FROM documents WHERE ` + dronesWhere + ` AND status = 'Available'`:                      "documents_drone_status",
		`SELECT seq, delivery_count FROM messages WHERE queue = 'q' AND visible_at <= 0 ORDER BY visible_at, seq LIMIT 5`: "messages_visible",
		`SELECT visible_at FROM messages WHERE queue = 'q' ORDER BY visible_at LIMIT 1`:                                   "messages_visible",
		`SELECT queue, id FROM message_ids WHERE expires_at <= 0 ORDER BY expires_at LIMIT 10`:                            "message_ids_expiry",
		// A listing page: a range of one owner's index rows, not a walk
		// from the owner's newest.
		deliveryPageQuery(""):                 "SEARCH i USING PRIMARY KEY (owner=? AND created>? AND created<?)",
		deliveryPageQuery("AND i.stage = ?6"): "COVERING INDEX delivery_index_owner_stage (owner=? AND stage=? AND created>? AND created<?)",
		// A report's list of an owner's deliveries: the same range, oldest first.
		deliveryListQuery: "SEARCH i USING PRIMARY KEY (owner=? AND created>? AND created<?)",
	} {
		// The listing's statements take parameters (owner, times, id,
		// limit and maybe stage); the plan does not depend on their values.
		var args []any
		for i, v := range []any{"owner", 0, 100, "id", 10, "Created"} {
			if strings.Contains(query, fmt.Sprintf("?%d", i+1)) {
				args = append(args, v)
			}
		}
		rows, err := db.r.QueryContext(ctxFor(t), "EXPLAIN QUERY PLAN "+query, args...)
		must(t, err, "explain")
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			must(t, rows.Scan(&id, &parent, &unused, &detail), "scan plan")
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		assert.Contains(t, joined, index, "%s\n  want it to use %s", query, index)
		assert.NotContains(t, joined, "TEMP B-TREE", "%s\n  want it without sorting", query)
	}
}
