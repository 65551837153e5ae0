package embedded

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// Checkpoints copy the WAL back into the database file. SQLite runs one
// inside whichever commit finds the WAL past wal_autocheckpoint pages, and
// that commit then takes milliseconds instead of microseconds: every write
// of its group waits, and it shows as the p99 of every request. So a
// goroutine with a connection of its own checkpoints instead, in the
// background, soon after commits, and the writer's own threshold is raised
// to a backstop that only matters if the background falls behind.
const (
	// writerAutocheckpoint is the writer's backstop, in pages (4 KiB each).
	writerAutocheckpoint = 8000
	// checkpointGap bounds how often the background checkpoints: each one
	// syncs both files, which costs more than it saves when done per commit.
	checkpointGap = 20 * time.Millisecond
)

type checkpointer struct {
	db      *DB
	conn    *sql.DB
	nudges  chan struct{}
	stopped chan struct{}
}

func newCheckpointer(db *DB, dsn string) (*checkpointer, error) {
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxLifetime(0)
	conn.SetConnMaxIdleTime(0)
	c := &checkpointer{db: db, conn: conn, nudges: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.loop()
	return c, nil
}

// nudge says a commit happened; it never blocks the committer.
func (c *checkpointer) nudge() {
	select {
	case c.nudges <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.db.done:
			return
		case <-c.nudges:
		}
		// PASSIVE never waits for the writer or readers: it copies what it
		// can, and SQLite restarts the WAL from its start once all of it
		// has been copied. A failure (another process checkpointing, say)
		// is left to the next nudge or to the writer's backstop.
		c.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		select {
		case <-c.db.done:
			return
		case <-time.After(checkpointGap):
		}
	}
}

func (c *checkpointer) close() error {
	<-c.stopped
	return c.conn.Close()
}

// Checkpoint copies the whole WAL into the database file and empties it
// (PRAGMA wal_checkpoint(TRUNCATE)), waiting for readers and the writer as
// long as the busy timeout allows. The benchmarks call it between their
// setup and what they time, so that the background checkpointer is not
// still copying the setup's writes into the file while the timed steps
// commit. The first write after it starts the WAL afresh, which syncs the
// WAL's header (https://www.sqlite.org/src/info/ff5be73dee): a caller that
// times writes makes an untimed one first.
func (db *DB) Checkpoint(ctx context.Context) error {
	var busy, logged, copied int
	if err := db.ckpt.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &copied); err != nil {
		return db.fail(err, "checkpoint")
	}
	if busy != 0 {
		return domain.Unavailable(errors.New("a reader or another process still uses the WAL"), "checkpoint")
	}
	return nil
}
