package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// maxAttempts bounds the optimistic-concurrency loop: a document this
// contended is better reported as EUNAVAILABLE, so the message is retried
// later, than fought over indefinitely.
const maxAttempts = 32

// collection keeps the documents of one aggregate as JSON rows of the
// shared documents table.
type collection[T any] struct {
	db   *DB
	name string
	// written, when set, learns of every write this process commits, in no
	// particular order; the version lets it discard stale news.
	written func(id string, version int64, v *T)
}

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
	ok, err := c.insert(ctx, id, v)
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", c.name, id, err)
	}
	if !ok {
		return domain.Errorf(domain.ECONFLICT, "%s %s already exists", c.name, id)
	}
	return nil
}

// Update implements ports.Collection.
func (c *collection[T]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	unlock, err := c.db.turns.Take(ctx, c.name+"\x00"+id)
	if err != nil {
		return nil, fmt.Errorf("update %s/%s: %w", c.name, id, err)
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		version, body, err := c.read(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("update %s/%s: %w", c.name, id, err)
		}
		v, err := c.decode(id, body)
		if err != nil {
			return nil, err
		}
		if err := fn(v); err != nil {
			if errors.Is(err, ports.ErrSkip) {
				// fn may have changed v before giving up.
				return c.decode(id, body)
			}
			return nil, err
		}
		ok, err := c.replace(ctx, id, version, v)
		if err != nil {
			return nil, fmt.Errorf("update %s/%s: %w", c.name, id, err)
		}
		if ok {
			return v, nil
		}
		if err := c.backoff(ctx, "update", id, attempt); err != nil {
			return nil, err
		}
	}
}

// Upsert implements ports.Collection.
func (c *collection[T]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	unlock, err := c.db.turns.Take(ctx, c.name+"\x00"+id)
	if err != nil {
		return nil, fmt.Errorf("upsert %s/%s: %w", c.name, id, err)
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		version, body, err := c.read(ctx, id)
		missing := domain.IsCode(err, domain.ENOTFOUND)
		if err != nil && !missing {
			return nil, fmt.Errorf("upsert %s/%s: %w", c.name, id, err)
		}
		var cur *T
		if !missing {
			if cur, err = c.decode(id, body); err != nil {
				return nil, err
			}
		}
		next, err := fn(cur)
		if err != nil {
			if !errors.Is(err, ports.ErrSkip) {
				return nil, err
			}
			if missing {
				return nil, nil
			}
			return c.decode(id, body)
		}
		if next == nil {
			return nil, domain.Errorf(domain.EINTERNAL, "upsert %s/%s: the update function returned no document", c.name, id)
		}
		var ok bool
		if missing {
			ok, err = c.insert(ctx, id, next)
		} else {
			ok, err = c.replace(ctx, id, version, next)
		}
		if err != nil {
			return nil, fmt.Errorf("upsert %s/%s: %w", c.name, id, err)
		}
		if ok {
			return next, nil
		}
		if err := c.backoff(ctx, "upsert", id, attempt); err != nil {
			return nil, err
		}
	}
}

// read returns the stored version and JSON; the body is kept undecoded so
// an update that skips can return the stored document without reading again.
func (c *collection[T]) read(ctx context.Context, id string) (int64, []byte, error) {
	var version int64
	var body []byte
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
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", c.name, id, err)
	}
	return v, nil
}

// insert reports false when the id is taken.
func (c *collection[T]) insert(ctx context.Context, id string, v *T) (bool, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encode: %w", err)
	}
	var n int64
	err = c.db.commit.write(ctx, "insert", func(w *writeTx) error {
		// Bound as text: SQLite's JSON functions take a blob for JSONB,
		// which would break the status column.
		res, err := w.stmt(c.db.st.docInsert).Exec(c.name, id, string(body), time.Now().UnixNano())
		n = affected(res, err)
		return err
	})
	if err != nil {
		return false, err
	}
	return c.committed(n > 0, id, 1, v), nil
}

// replace reports false when somebody wrote since version was read.
func (c *collection[T]) replace(ctx context.Context, id string, version int64, v *T) (bool, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encode: %w", err)
	}
	var n int64
	err = c.db.commit.write(ctx, "write", func(w *writeTx) error {
		res, err := w.stmt(c.db.st.docUpdate).Exec(string(body), time.Now().UnixNano(), c.name, id, version)
		n = affected(res, err)
		return err
	})
	if err != nil {
		return false, err
	}
	return c.committed(n > 0, id, version+1, v), nil
}

// committed tells the written hook about a successful write.
func (c *collection[T]) committed(ok bool, id string, version int64, v *T) bool {
	if ok && c.written != nil {
		c.written(id, version, v)
	}
	return ok
}

// backoff waits a random moment after a lost race, growing with the
// attempt, so that writers which keep colliding spread out instead of
// colliding again in lockstep.
func (c *collection[T]) backoff(ctx context.Context, op, id string, attempt int) error {
	if attempt >= maxAttempts {
		return domain.Errorf(domain.EUNAVAILABLE, "%s %s/%s: lost %d races to concurrent writers", op, c.name, id, attempt)
	}
	t := time.NewTimer(rand.N(time.Duration(attempt) * 200 * time.Microsecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s %s/%s: %w", op, c.name, id, ctx.Err())
	case <-t.C:
		return nil
	}
}
