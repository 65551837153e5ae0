package embedded

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync/atomic"
)

// maxGroup bounds the writes one transaction carries, so that a burst
// cannot make the first writer of a group wait for thousands behind it.
const maxGroup = 256

// committer is group commit: every write of this process is queued to one
// goroutine that runs whatever has queued up meanwhile in a single
// transaction. A commit in WAL mode appends each page it changed to the log,
// and most of a small write's cost is that commit, not the write: a hundred
// writes in one transaction cost a few times one, not a hundred times. A
// writer still returns only after its own transaction committed, so nothing
// is acknowledged that a crash could lose, and when nobody else is writing
// the group is just that one write.
type committer struct {
	db      *DB
	ops     chan *writeOp
	stopped chan struct{} // closed when the loop has exited

	commits, writes atomic.Int64
}

// Stats counts the work of a DB's writer since it opened.
type Stats struct {
	// Commits is how many transactions the writer committed or tried to.
	Commits int64
	// Writes is how many writes those transactions carried; Writes per
	// Commit is how well group commit is batching.
	Writes int64
}

// Stats returns the writer's counts so far.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.commit.commits.Load(), Writes: db.commit.writes.Load()}
}

// writeOp is one writer's share of a group. fn runs inside the group's
// transaction and must set its results afresh on every call: if another
// write of the group fails, the group is rolled back and each write is run
// again in a transaction of its own.
type writeOp struct {
	ctx     context.Context
	what    string // for errors: "update deliveries/42"
	fn      func(*writeTx) error
	err     error
	skipped bool // its ctx ended before its turn: it never ran
	done    chan struct{}
}

// writeTx is a group's transaction as one write sees it.
type writeTx struct {
	tx    *sql.Tx
	stmts map[*sql.Stmt]*sql.Stmt
}

// stmt returns the prepared statement bound to this transaction, binding
// each statement once per group rather than once per write.
func (w *writeTx) stmt(s *sql.Stmt) *sql.Stmt {
	if ts, ok := w.stmts[s]; ok {
		return ts
	}
	ts := w.tx.Stmt(s)
	w.stmts[s] = ts
	return ts
}

func newCommitter(db *DB) *committer {
	c := &committer{db: db, ops: make(chan *writeOp, maxGroup), stopped: make(chan struct{})}
	go c.loop()
	return c
}

// write runs fn in a transaction shared with whatever other writes are
// waiting and returns once that transaction has committed or failed. A
// write whose ctx ends before its turn is not run.
func (c *committer) write(ctx context.Context, what string, fn func(*writeTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, what: what, fn: fn, done: make(chan struct{})}
	select {
	case c.ops <- op:
	case <-c.db.done:
		return c.db.fail(ErrClosed, "%s", what)
	}
	// Once queued, the op is waited for even if ctx ends: whether it
	// committed must be known, and a group takes milliseconds.
	select {
	case <-op.done:
		return op.err
	case <-c.stopped:
		select {
		case <-op.done:
			return op.err
		default:
			return c.db.fail(ErrClosed, "%s", what)
		}
	}
}

func (c *committer) loop() {
	defer close(c.stopped)
	group := make([]*writeOp, 0, maxGroup)
	for {
		select {
		case <-c.db.done:
			c.drain()
			return
		case op := <-c.ops:
			group = c.collect(append(group[:0], op))
		}
		group = c.run(group)
		clear(group)
	}
}

// collect adds the writes that are waiting, without waiting for more.
func (c *committer) collect(group []*writeOp) []*writeOp {
	for len(group) < maxGroup {
		select {
		case op := <-c.ops:
			group = append(group, op)
		default:
			return group
		}
	}
	return group
}

// drain fails the writes still queued when the DB closes.
func (c *committer) drain() {
	for {
		select {
		case op := <-c.ops:
			op.err = c.db.fail(ErrClosed, "%s", op.what)
			close(op.done)
		default:
			return
		}
	}
}

// run commits a group, which may grow while it runs, and returns it. If
// one write fails, the group is rolled back and every write runs alone, so
// that one bad write cannot fail the others.
func (c *committer) run(group []*writeOp) []*writeOp {
	group, err := c.commit(group, true)
	if !errors.Is(err, errOpFailed) {
		for _, op := range group {
			if err != nil && !op.skipped {
				op.err = c.db.fail(err, "%s", op.what)
			}
			close(op.done)
		}
		return group
	}
	for _, op := range group {
		if !op.skipped {
			op.err = nil
			if _, err := c.commit([]*writeOp{op}, false); errors.Is(err, errOpFailed) {
				op.err = c.db.fail(op.err, "%s", op.what)
			} else if err != nil {
				op.err = c.db.fail(err, "%s", op.what)
			}
		}
		close(op.done)
	}
	return group
}

// errOpFailed says a write of the group failed; the write's own error is
// in its op.
var errOpFailed = errors.New("a write of the group failed")

// commit runs ops in one transaction. When grow is set, writes that queued
// while the group's statements ran join it before the commit, which costs
// them no wait and makes groups largest exactly when writers are many. It
// returns errOpFailed, with the failing op's err set, when an op failed,
// or the transaction's own error.
func (c *committer) commit(ops []*writeOp, grow bool) ([]*writeOp, error) {
	// Statements run under a context of their own: one writer giving up
	// must not abort a transaction that carries other writers' work.
	tx, err := c.db.w.BeginTx(context.Background(), nil)
	if err != nil {
		return ops, err
	}
	w := &writeTx{tx: tx, stmts: make(map[*sql.Stmt]*sql.Stmt, 8)}
	for i := 0; i < len(ops); i++ {
		op := ops[i]
		if !op.skipped && op.ctx.Err() != nil {
			op.err, op.skipped = op.ctx.Err(), true
		}
		if !op.skipped {
			if err := op.fn(w); err != nil {
				tx.Rollback()
				op.err = err
				return ops, errOpFailed
			}
		}
		if grow && i == len(ops)-1 {
			ops = c.collect(ops)
			if len(ops) == i+1 {
				// Nothing queued: let writers that are running reach their
				// writes before paying for a commit. When none is running
				// this returns at once, so a lone write is not delayed;
				// under load it turns a few writes per commit into dozens.
				runtime.Gosched()
				ops = c.collect(ops)
			}
		}
	}
	c.commits.Add(1)
	c.writes.Add(int64(len(ops)))
	if err := tx.Commit(); err != nil {
		return ops, err
	}
	c.db.ckpt.nudge()
	return ops, nil
}
