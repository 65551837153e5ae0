// Package embedded implements the store and bus ports on one SQLite file, so
// the whole service runs on a laptop or in a test with nothing installed and
// survives kill -9 without losing an accepted request.
//
// Every write goes through a single connection: SQLite admits one writer at a
// time anyway, and queueing writers in process is cheaper and fairer than
// letting them collide on SQLITE_BUSY. That queue is group commit: the
// writes waiting at any moment share one transaction (see committer). Reads
// use a small pool of their own, which WAL lets run beside the writer.
// Another process may open the same
// file; the busy timeout makes the two take turns at the write lock. What
// one process cannot see of another is its in-memory state: queue wake-ups
// (the other process's receivers notice by polling), the nearest-drone
// index and the fleet summary kept beside it (drones claimed, freed or
// registered elsewhere show there only after a reopen, or once a commit of
// this process found such a drone changed; the claim is a conditional
// write, so a stale index costs a retry, never a double booking).
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// Options tunes the bus; a zero field takes its default.
type Options struct {
	// LockDuration is how long a received message stays locked (default 60s).
	LockDuration time.Duration
	// MaxDeliveryCount is how many deliveries a message gets before it is
	// dead-lettered (default topology.MaxDeliveryCount).
	MaxDeliveryCount int
	// DuplicateWindow is how long a message id is remembered per queue
	// (default 10 minutes, Service Bus's default).
	DuplicateWindow time.Duration
	// PollInterval bounds how late Receive notices a message published by
	// another process or one whose delay ends (default 100ms).
	PollInterval time.Duration
	// FaultSwitch is a test hook for outage tests: while a file exists at
	// this path, every write (a document, a publish, a receive's lock, a
	// settlement) fails with EUNAVAILABLE, as when the data folder's disk
	// is full or read-only, and reads go on. Empty, the default, checks
	// nothing.
	FaultSwitch string
}

// ErrInjectedFault is the cause of the writes that Options.FaultSwitch fails.
var ErrInjectedFault = errors.New("injected store fault (test hook)")

func (o Options) withDefaults() Options {
	if o.LockDuration <= 0 {
		o.LockDuration = 60 * time.Second
	}
	if o.MaxDeliveryCount <= 0 {
		o.MaxDeliveryCount = topology.MaxDeliveryCount
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	return o
}

// ErrClosed is the cause of errors from a DB that has been closed.
var ErrClosed = errors.New("embedded database closed")

const (
	// busyTimeoutMs is how long a statement waits for another process to
	// release the write lock before failing with EUNAVAILABLE.
	busyTimeoutMs  = 5000
	readPoolSize   = 4
	readerCacheKiB = 512
)

// DB is one open SQLite file holding the documents and the queues.
type DB struct {
	w, r   *sql.DB // the single writer and the read pool
	opts   Options
	st     statements
	commit *committer
	ckpt   *checkpointer
	fleet  *fleet
	// analytics keeps the running totals; deliveries' writes add to them.
	analytics *analytics
	store     ports.Store
	bus       *Bus
	reads     atomic.Int64 // documents read by id, for Stats

	done      chan struct{} // closed by Close, so blocked receivers return
	closeOnce sync.Once
}

// Open opens or creates the database at path and loads the fleet's spatial
// index from it.
func Open(path string, opts Options) (*DB, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		// The driver reads everything after '?' as its own parameters.
		return nil, domain.Invalid("path", "must be a file name without '?'")
	}
	if err := restrictFiles(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	common := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)", path, busyTimeoutMs)
	// IMMEDIATE takes the write lock at BEGIN, where the busy timeout can
	// wait for it; a deferred transaction that reads first and then writes
	// fails at once if another process committed in between.
	// temp_store(MEMORY) keeps the statement journal of each unit of work's
	// savepoint in memory instead of a temporary file: it only serves to undo
	// a savepoint inside an open transaction, never recovery after a crash,
	// and on a file it cost a write system call for every page a savepoint
	// touched.
	w, err := sql.Open("sqlite", common+"&_pragma=journal_mode(WAL)&_txlock=immediate&_pragma=temp_store(MEMORY)"+
		fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", writerAutocheckpoint))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{w: w, opts: opts.withDefaults(), done: make(chan struct{})}
	ctx := context.Background()
	if err := db.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Readers open only after the writer has switched the file to WAL, or
	// the first of them could race it in rollback-journal mode. Their page
	// caches are small: SQLite empties a reader's cache whenever another
	// connection has committed since its last read, which under load is
	// every read, so a large one only holds memory (about 14 MB less
	// resident after a full-speed read of 20,000 deliveries, no slower).
	db.r, err = sql.Open("sqlite", common+"&_query_only=1"+fmt.Sprintf("&_pragma=cache_size(-%d)", readerCacheKiB))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.r.SetMaxOpenConns(readPoolSize)
	db.r.SetMaxIdleConns(readPoolSize)
	db.r.SetConnMaxLifetime(0)
	db.r.SetConnMaxIdleTime(0)

	if err := db.st.prepare(ctx, db.w, db.r); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// A checkpoint copies frames without going through the page cache.
	if db.ckpt, err = newCheckpointer(db, common+"&_pragma=cache_size(-64)"); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.commit = newCommitter(db)
	db.analytics = &analytics{db: db}
	db.fleet = newFleet(db)
	if err := db.fleet.load(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.store = ports.Store{
		Deliveries: newDeliveries(db),
		Packages:   newCollection[domain.Package](db, topology.ContainerPackages),
		Fleet:      db.fleet,
		Accounts:   newCollection[domain.Account](db, topology.ContainerAccounts),
		APIKeys:    newCollection[domain.APIKey](db, topology.ContainerAPIKeys),

		Confirmations: newCollection[domain.ConfirmationBlob](db, topology.ContainerConfirmations),
		Zones:         newZones(db),
		Analytics:     db.analytics,
		Pauses:        newPauses(db),
		Suppressions:  newCollection[domain.Suppression](db, topology.ContainerSuppressions),
	}
	db.store.Waiting = waiting{db.store.Deliveries.(deliveries)}
	db.bus = newBus(db)
	return db, nil
}

// Close closes the file; receivers blocked on this DB return ErrClosed.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() {
		close(db.done)
		if db.commit != nil {
			// The statements must outlive the group being committed.
			db.commit.close()
		}
		if db.ckpt != nil {
			err = db.ckpt.close()
		}
		db.st.close()
		if db.r != nil {
			err = errors.Join(err, db.r.Close())
		}
		err = errors.Join(err, db.w.Close())
	})
	return err
}

// Store returns the document collections kept in this file.
func (db *DB) Store() ports.Store { return db.store }

// Bus returns the queues kept in this file.
func (db *DB) Bus() *Bus { return db.bus }

// schema is idempotent so every process may run it on open; the write lock
// of BEGIN IMMEDIATE keeps two processes from interleaving it.
const schema = `
CREATE TABLE IF NOT EXISTS documents (
	collection TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	body       TEXT    NOT NULL, -- JSON
	updated_at INTEGER NOT NULL, -- unix ns
	status     TEXT GENERATED ALWAYS AS (json_extract(body, '$.status')) VIRTUAL,
	PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS documents_drone_status
	ON documents (status, id) WHERE collection = 'drones';
-- Deliveries are listed by owner through delivery_index; the index on the
-- documents' JSON that served this before cost every write of a delivery
-- an expression and an index page, so a file that still has it drops it.
DROP INDEX IF EXISTS documents_delivery_owner;

-- The owner index of deliveries, which listings read: one row per delivery,
-- written in the transaction that writes the delivery (see indexDelivery).
-- Creation times are unix nanoseconds, which sort as numbers, where the
-- RFC 3339 text in the documents would not. The rows are kept in listing
-- order (a clustered primary key), so a listing without a stage filter
-- reads the table itself and each write touches two B-trees, not three; a
-- delivery's owner and creation time never change, so the key never moves.
CREATE TABLE IF NOT EXISTS delivery_index (
	owner   TEXT    NOT NULL,
	created INTEGER NOT NULL,
	id      TEXT    NOT NULL,
	stage   TEXT    NOT NULL,
	PRIMARY KEY (owner, created, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_index_owner_stage ON delivery_index (owner, stage, created, id);
-- The operator's listing of waiting deliveries (waiting.go): only the rows
-- in a stage a waiting delivery can be in are in it, so a delivery leaves
-- it when it takes off.
CREATE INDEX IF NOT EXISTS delivery_index_waiting ON delivery_index (created, id)
	WHERE stage IN ('Created', 'Rescheduled', 'Scheduled');

-- Analytics: running totals per bucket (an account, a service area, the
-- fleet), month and day, and the contributions already added, one row per
-- delivery and stage, both written in the transaction that writes the
-- delivery (see analytics.go). A month is at most 31 rows of one bucket.
CREATE TABLE IF NOT EXISTS analytics (
	bucket      TEXT    NOT NULL,
	month       TEXT    NOT NULL, -- 2026-12
	day         INTEGER NOT NULL, -- 1..31
	count       INTEGER NOT NULL DEFAULT 0,
	completed   INTEGER NOT NULL DEFAULT 0,
	cancelled   INTEGER NOT NULL DEFAULT 0,
	failed      INTEGER NOT NULL DEFAULT 0,
	on_time     INTEGER NOT NULL DEFAULT 0,
	duration_ms INTEGER NOT NULL DEFAULT 0,
	traveled_m  INTEGER NOT NULL DEFAULT 0,
	assigned_ms INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (bucket, month, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS analytics_applied (
	delivery TEXT NOT NULL,
	stage    TEXT NOT NULL,
	PRIMARY KEY (delivery, stage)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	queue          TEXT    NOT NULL,
	id             TEXT    NOT NULL,
	body           BLOB,
	correlation_id TEXT    NOT NULL DEFAULT '',
	operation      TEXT    NOT NULL DEFAULT '',
	not_before     INTEGER NOT NULL DEFAULT 0,
	enqueued_at    INTEGER NOT NULL,
	visible_at     INTEGER NOT NULL,
	delivery_count INTEGER NOT NULL DEFAULT 0,
	lock_token     TEXT,
	dl_reason      TEXT    NOT NULL DEFAULT '',
	dl_description TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, seq);

CREATE TABLE IF NOT EXISTS message_ids (
	queue      TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (queue, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_ids_expiry ON message_ids (expires_at);
`

// schemaVersion is the PRAGMA user_version of a file whose data is up to
// date with the schema: 1 once the deliveries written before the owner
// index existed have their rows in it; 2 once messages have the columns of
// their trace context (traceColumns).
const schemaVersion = 2

// traceColumns add a message's W3C trace context (see package tracing) to
// the messages table. They are added by ALTER TABLE rather than in the
// CREATE TABLE above, so that a file made before them and a new one end up
// with the same table; addColumns skips those a file already has.
var traceColumns = []string{
	"trace_parent TEXT NOT NULL DEFAULT ''",
	"trace_state  TEXT NOT NULL DEFAULT ''",
}

// addColumns adds to table each column definition whose column it lacks.
func addColumns(ctx context.Context, tx *sql.Tx, table string, defs []string) error {
	for _, def := range defs {
		name, _, _ := strings.Cut(def, " ")
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", table, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, "ALTER TABLE "+table+" ADD COLUMN "+def); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) migrate(ctx context.Context) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.fail(err, "migrate")
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return db.fail(err, "migrate")
	}
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return db.fail(err, "migrate")
	}
	if version < 1 {
		if err := backfillDeliveryIndex(ctx, tx); err != nil {
			return db.fail(err, "migrate: index the existing deliveries")
		}
	}
	if version < 2 {
		if err := addColumns(ctx, tx, "messages", traceColumns); err != nil {
			return db.fail(err, "migrate: add the messages' trace context")
		}
	}
	if version < schemaVersion {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return db.fail(err, "migrate")
		}
	}
	return db.fail(tx.Commit(), "migrate")
}

// fail adds context to a driver error and classifies it: a busy or locked
// file means another process held the write lock past the busy timeout, a
// full disk or a read-only file waits for its operator to make room or
// give the permission back, and a closed DB may be reopened, so all are
// EUNAVAILABLE because retrying may cure them (ingest answers 503 and the
// queue steps retry on their schedule); anything else keeps its cause and
// counts as internal.
func (db *DB) fail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	select {
	case <-db.done:
		return domain.Unavailable(ErrClosed, "%s", msg)
	default:
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
			return domain.Unavailable(err, "%s", msg)
		}
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// affected returns the rows a statement changed, or 0 when it failed; the
// driver counts them while executing, so RowsAffected cannot fail.
func affected(res sql.Result, err error) int64 {
	if err != nil {
		return 0
	}
	n, _ := res.RowsAffected()
	return n
}

// fromNanos reads a stored time, where 0 means none.
func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
