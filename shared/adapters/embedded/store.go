package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/fabrikam/dronedelivery/shared/adapters/optimistic"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/keylock"
)

// maxAttempts and backoffStep bound the optimistic-concurrency loop (see
// optimistic.Loop). Writers in this process take turns, so a race is lost
// only to another process sharing the file.
const (
	maxAttempts = 32
	backoffStep = 200 * time.Microsecond
)

// collection keeps the documents of one aggregate as JSON rows of the
// shared documents table.
type collection[T any] struct {
	db   *DB
	name string
	loop optimistic.Loop[T, stored]
	// turns queues this process's read-modify-writes of one document.
	turns keylock.Turns
	// written, when set, learns of every write this process commits, and
	// of what a unit of work reads from the file, in no particular order;
	// the version lets it discard stale news.
	written func(id string, version int64, v *T)
	// index, when set, writes what an index table keeps of a document, in
	// the transaction that writes the document, so the two never disagree.
	index func(w *writeTx, id string, v *T) error
	// clone, when set, copies a document without sharing anything a caller
	// could change, so that a unit of work decodes a document once.
	clone func(*T) *T
	// cached, when set, returns a copy of a document at its version as
	// this process last committed or read it, without reading the file;
	// a unit of work starts from it, its conditional write guarding
	// against a newer version written by another process.
	cached func(id string) (version int64, v *T, ok bool)
	// recent, when set, keeps the JSON of the documents this process
	// committed or a unit of work read last (see recentCopy).
	recent *recent
}

// stored is a document as read: its version, on which a write is
// conditional, and its JSON, kept so that an update that skips can return
// the stored document without reading it again.
type stored struct {
	version int64
	body    []byte
}

func newCollection[T any](db *DB, name string) *collection[T] {
	c := &collection[T]{db: db, name: name}
	c.loop = optimistic.Loop[T, stored]{Name: name, Store: c, Turns: &c.turns,
		Attempts: maxAttempts, Backoff: backoffStep, Fail: c.wrap}
	return c
}

var _ optimistic.Store[domain.Delivery, stored] = (*collection[domain.Delivery])(nil)

// Find implements ports.Collection.
func (c *collection[T]) Find(ctx context.Context, id string) (*T, error) {
	_, body, err := c.read(ctx, id)
	if err != nil {
		return nil, err
	}
	return c.decode(id, body)
}

// Create implements ports.Collection.
func (c *collection[T]) Create(ctx context.Context, id string, v *T) error {
	err := c.Insert(ctx, id, v)
	if err != nil && !domain.IsCode(err, domain.ECONFLICT) {
		return c.wrap(err, "create", id)
	}
	return err
}

// Update implements ports.Collection.
func (c *collection[T]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	return c.loop.Update(ctx, id, fn)
}

// Upsert implements ports.Collection.
func (c *collection[T]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	return c.loop.Upsert(ctx, id, fn)
}

// Load implements optimistic.Store.
func (c *collection[T]) Load(ctx context.Context, id string) (*T, stored, error) {
	version, body, err := c.read(ctx, id)
	if err != nil {
		return nil, stored{}, err
	}
	v, err := c.decode(id, body)
	return v, stored{version, body}, err
}

// Decode implements optimistic.Store.
func (c *collection[T]) Decode(id string, s stored) (*T, error) { return c.decode(id, s.body) }

// Delete removes the document stored under id, or returns ENOTFOUND.
func (c *collection[T]) Delete(ctx context.Context, id string) error {
	var n int64
	err := c.db.commit.write(ctx, "delete "+c.name+"/"+id, func(w *writeTx) error {
		res, err := w.stmt(c.db.st.docDelete).Exec(c.name, id)
		n = affected(res, err)
		return err
	})
	if err != nil {
		return c.wrap(err, "delete", id)
	}
	if n == 0 {
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", c.name, id)
	}
	return nil
}

// wrap says which operation on which document failed.
func (c *collection[T]) wrap(err error, op, id string) error {
	return fmt.Errorf("%s %s/%s: %w", op, c.name, id, err)
}

// read returns the stored version and JSON.
func (c *collection[T]) read(ctx context.Context, id string) (int64, []byte, error) {
	var version int64
	var body []byte
	c.db.reads.Add(1)
	err := c.db.st.docFind.QueryRowContext(ctx, c.name, id).Scan(&version, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, domain.Errorf(domain.ENOTFOUND, "%s %s not found", c.name, id)
	}
	if err != nil {
		return 0, nil, c.db.fail(err, "find %s/%s", c.name, id)
	}
	return version, body, nil
}

func (c *collection[T]) decode(id string, body []byte) (*T, error) {
	v := new(T)
	if err := decodeStored(body, v); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", c.name, id, err)
	}
	return v, nil
}

// decodeRows reads rows of id and body to their end and closes them,
// decoding each body with decode.
func decodeRows[T any](rows *sql.Rows, decode func(id string, body []byte) (*T, error)) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, err
		}
		v, err := decode(id, body)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Insert implements optimistic.Store.
func (c *collection[T]) Insert(ctx context.Context, id string, v *T) error {
	wrote, body, err := c.write(ctx, "insert", id, v, func(w *writeTx, body string) (sql.Result, error) {
		return w.stmt(c.db.st.docInsert).Exec(c.name, id, body, time.Now().UnixNano())
	})
	if err != nil {
		return err
	}
	if !wrote {
		return domain.Errorf(domain.ECONFLICT, "%s %s already exists", c.name, id)
	}
	c.learned(id, 1, v, body)
	return nil
}

// Replace implements optimistic.Store.
func (c *collection[T]) Replace(ctx context.Context, id string, s stored, v *T) error {
	wrote, body, err := c.write(ctx, "write", id, v, func(w *writeTx, body string) (sql.Result, error) {
		return w.stmt(c.db.st.docUpdate).Exec(body, time.Now().UnixNano(), c.name, id, s.version)
	})
	if err != nil {
		return err
	}
	if !wrote {
		return optimistic.ErrChanged
	}
	c.learned(id, s.version+1, v, body)
	return nil
}

// write encodes v and, in a group-committed transaction, runs exec with
// its JSON and then, if exec changed a row, the index hook. It returns
// whether a row changed, and the JSON. The JSON is bound as text: SQLite's
// JSON functions take a blob for JSONB, which would break the status
// column.
func (c *collection[T]) write(ctx context.Context, op, id string, v *T, exec func(w *writeTx, body string) (sql.Result, error)) (bool, []byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, nil, fmt.Errorf("encode: %w", err)
	}
	var n int64
	err = c.db.commit.write(ctx, op, func(w *writeTx) error {
		res, err := exec(w, string(body))
		if n = affected(res, err); n == 0 || err != nil {
			return err
		}
		return c.indexed(w, id, v)
	})
	return n > 0, body, err
}

// indexed runs the index hook, if any, for a document just written in w.
func (c *collection[T]) indexed(w *writeTx, id string, v *T) error {
	if c.index == nil {
		return nil
	}
	return c.index(w, id, v)
}

// learned tells the written hook, and recent, of a version of a
// document: one this process committed, or one a unit of work read from
// the file. body is v's JSON, which nobody changes afterwards.
func (c *collection[T]) learned(id string, version int64, v *T, body []byte) {
	if c.written != nil {
		c.written(id, version, v)
	}
	if c.recent != nil {
		c.recent.put(id, version, body)
	}
}

// recentCopy returns document id as recent holds it, decoded: the cached
// hook of a collection with recent set.
func (c *collection[T]) recentCopy(id string) (int64, *T, bool) {
	version, body, ok := c.recent.get(id)
	if !ok {
		return 0, nil, false
	}
	v, err := c.decode(id, body)
	if err != nil {
		return 0, nil, false
	}
	return version, v, true
}

// decodeStored reads a document this store wrote. It uses the standard
// library's v2 JSON decoder (encoding/json/v2, as the module
// github.com/go-json-experiment/json until Go 1.27 makes it stable), which
// reads the service's documents in less than half the time and a third of
// the allocations of encoding/json. The documents are written by
// encoding/json, whose output v2 reads the same way: exact field names,
// valid UTF-8, no repeated names (v2 would refuse the last two, which
// encoding/json never writes).
func decodeStored(body []byte, v any) error { return jsonv2.Unmarshal(body, v) }
