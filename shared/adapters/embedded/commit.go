package embedded

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// maxGroup bounds the writes one transaction carries, so that a burst
// cannot make the first writer of a group wait for thousands behind it.
const maxGroup = 256

// committer is group commit: writes are queued, and the writes waiting at
// any moment run in a single transaction. A commit in WAL mode appends
// each page it changed to the log, and most of a small write's cost is
// that commit, not the write: a hundred writes in one transaction cost a
// few times one, not a hundred times. A writer still returns only after
// its own transaction committed, so nothing is acknowledged that a crash
// could lose.
//
// There is no committer goroutine: the writer that finds nobody committing
// commits itself, taking along whatever queued meanwhile, then hands the
// lead to the first writer still waiting. A lone writer thus commits on
// its own goroutine, with no hand-off to another and back, which is most
// of what a small write costs beyond SQLite itself.
type committer struct {
	db *DB

	mu      sync.Mutex
	queue   []*writeOp
	leading bool // a writer is committing a group
	closed  bool
	idle    *sync.Cond // signalled when leading turns false

	commits, writes atomic.Int64
}

// Stats counts the work of a DB's writer since it opened.
type Stats struct {
	// Commits is how many transactions the writer committed or tried to.
	Commits int64
	// Writes is how many writes those transactions carried; Writes per
	// Commit is how well group commit is batching.
	Writes int64
	// Reads is how many documents were read by id.
	Reads int64
}

// Stats returns the writer's counts so far.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.commit.commits.Load(), Writes: db.commit.writes.Load(), Reads: db.reads.Load()}
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
	// wake tells a waiting writer either that its write is done (false)
	// or that it now leads the next group (true).
	wake chan bool
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
	c := &committer{db: db}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// write runs fn in a transaction shared with whatever other writes are
// waiting and returns once that transaction has committed or failed. A
// write whose ctx ends before its turn is not run; once queued, a write is
// waited for even if ctx ends, since whether it committed must be known,
// and a group takes milliseconds.
func (c *committer) write(ctx context.Context, what string, fn func(*writeTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sw := c.db.opts.FaultSwitch; sw != "" {
		if _, err := os.Stat(sw); err == nil {
			return domain.Unavailable(ErrInjectedFault, "%s: %s exists", what, sw)
		}
	}
	op := &writeOp{ctx: ctx, what: what, fn: fn, wake: make(chan bool, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.db.fail(ErrClosed, "%s", what)
	}
	c.queue = append(c.queue, op)
	if c.leading {
		c.mu.Unlock()
		if lead := <-op.wake; !lead {
			return op.err
		}
	} else {
		c.leading = true
		c.mu.Unlock()
	}
	c.lead(op)
	return op.err
}

// lead commits the next group, which holds own, then passes the lead to
// the first writer still queued, or gives it up.
func (c *committer) lead(own *writeOp) {
	c.mu.Lock()
	group := c.take(nil)
	c.mu.Unlock()
	group = c.run(group)
	for _, op := range group {
		if op != own {
			op.wake <- false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.fail(c.queue)
		c.queue = nil
	}
	if len(c.queue) == 0 {
		c.leading = false
		c.idle.Broadcast()
		return
	}
	c.queue[0].wake <- true
}

// take moves queued writes into group, up to maxGroup; c.mu is held.
func (c *committer) take(group []*writeOp) []*writeOp {
	n := min(len(c.queue), maxGroup-len(group))
	group = append(group, c.queue[:n]...)
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	return group
}

// collect adds the writes queued since the group was taken.
func (c *committer) collect(group []*writeOp) []*writeOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.take(group)
}

// fail ends writes that will never run because the DB closed; c.mu is held.
func (c *committer) fail(ops []*writeOp) {
	for _, op := range ops {
		op.err = c.db.fail(ErrClosed, "%s", op.what)
		op.wake <- false
	}
}

// close fails the writes still queued and waits for a group in progress.
func (c *committer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.leading {
		c.idle.Wait()
	}
	c.fail(c.queue)
	c.queue = nil
}

// run commits a group, which may grow while it runs, and returns it. If
// one write fails, the group is rolled back and every write runs alone, so
// that one bad write cannot fail the others. It leaves every op's err set.
func (c *committer) run(group []*writeOp) []*writeOp {
	group, err := c.commit(group, true)
	if !errors.Is(err, errOpFailed) {
		if err != nil {
			for _, op := range group {
				if !op.skipped {
					op.err = c.db.fail(err, "%s", op.what)
				}
			}
		}
		return group
	}
	for _, op := range group {
		if op.skipped {
			continue
		}
		op.err = nil
		if _, err := c.commit([]*writeOp{op}, false); errors.Is(err, errOpFailed) {
			op.err = c.db.fail(op.err, "%s", op.what)
		} else if err != nil {
			op.err = c.db.fail(err, "%s", op.what)
		}
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
