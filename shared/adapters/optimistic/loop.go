// Package optimistic is the read-modify-write loop both store adapters run
// for ports.Collection's Update and Upsert, so that the rules of a lost race
// (re-read, re-apply, back off, give up), of ports.ErrSkip and of the
// per-document turns are written once and cannot drift between backends.
//
// An adapter describes one collection as a Store: how to read a document
// with its version, how to write it conditionally on that version, and how
// to decode another copy of a version it read. Loop does the rest.
package optimistic

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/keylock"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// ErrChanged is what Store.Replace returns (possibly wrapped) when the
// version it was given is no longer the stored one: another writer changed
// or removed the document since it was read, so the loop reads again.
var ErrChanged = errors.New("the document changed since it was read")

// Store is one collection as the loop needs it. S is a stored version of a
// document: whatever the adapter needs to write conditionally on it and to
// decode it again (a version number or an ETag, and the encoded document).
// The loop calls these methods only while it holds the document's turn.
type Store[T, S any] interface {
	// Load reads the document and returns it decoded, with its version;
	// ENOTFOUND if it does not exist.
	Load(ctx context.Context, id string) (*T, S, error)
	// Decode returns a new copy of the document of version s. The loop
	// asks for one when an update skips, because the update function may
	// have changed the copy it was given before giving up.
	Decode(id string, s S) (*T, error)
	// Insert stores a new document; ECONFLICT if the id exists.
	Insert(ctx context.Context, id string, v *T) error
	// Replace writes v if s is still the stored version; ErrChanged if not.
	Replace(ctx context.Context, id string, s S, v *T) error
}

// Recaller is a Store that may know a document's version without reading
// it: the one it last wrote or read, or one an index holds. Starting from
// it saves the read whenever nobody wrote since.
type Recaller[T, S any] interface {
	Store[T, S]
	// Recall returns a new copy of the document and its version as last
	// seen, which may be stale; false if it knows none.
	Recall(id string) (*T, S, bool)
}

// Loop runs Update and Upsert for the documents of one collection. Its
// fields are set once, before the first call.
type Loop[T, S any] struct {
	// Name is the collection's, for error messages.
	Name string
	// Store reads and writes the documents.
	Store Store[T, S]
	// Turns queues this process's writers of one document, keyed by id;
	// it must be set.
	Turns *keylock.Turns
	// Attempts is how many races to lose before giving up with
	// EUNAVAILABLE: a document this contended is better retried later, by
	// redelivery of the message, than fought over indefinitely.
	Attempts int
	// Backoff is the longest wait after the first lost race; the n-th
	// waits up to n times as long, at random, so that writers which keep
	// colliding spread out instead of colliding again in lockstep.
	Backoff time.Duration
	// CreateFirst makes Upsert, when the Store recalls no version, first
	// try an Insert as if the document were missing: for documents that
	// are nearly always new, that saves the read; one that exists costs a
	// failed Insert (ECONFLICT), then the read, and fn runs again on it.
	CreateFirst bool
	// Fail, when set, gives the adapter's form to an error of the Store or
	// of the context (while waiting for a turn or backing off), with the
	// operation ("update" or "upsert") and the document id. The update
	// function's own errors and the loop's are returned as they are.
	Fail func(err error, op, id string) error
}

// Update implements ports.Collection.Update over l.Store.
func (l *Loop[T, S]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	return l.run(ctx, id, false, func(cur *T) (*T, error) {
		if err := fn(cur); err != nil {
			return nil, err
		}
		return cur, nil
	})
}

// Upsert implements ports.Collection.Upsert over l.Store, as Update does,
// creating the document when it is missing. Of two creators, the one whose
// Insert finds the id taken lost a race and runs again as an update.
func (l *Loop[T, S]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	return l.run(ctx, id, true, fn)
}

// run is the loop of both: fn sees a missing document as nil when create
// is set; otherwise run returns ENOTFOUND without calling it.
//
// When the Store can recall a version, fn is first applied to it and the
// write is made conditional on it; when nobody wrote since, that saves the
// read. Only a successful write proves a recalled version current, so an fn
// that fails or skips on one is judged again on a fresh read, and a write
// that finds it stale reads again at once: that is no race lost.
func (l *Loop[T, S]) run(ctx context.Context, id string, create bool, fn func(cur *T) (*T, error)) (*T, error) {
	op := "update"
	if create {
		op = "upsert"
	}
	end, err := l.Turns.Take(ctx, id)
	if err != nil {
		return nil, l.fail(err, op, id)
	}
	defer end()
	recall := true
	for lost := 0; ; {
		cur, s, fresh, err := l.current(ctx, id, recall, create)
		recall = false
		missing := domain.IsCode(err, domain.ENOTFOUND)
		if err != nil && (!missing || !create) {
			return nil, l.fail(err, op, id)
		}
		next, err := fn(cur)
		if err != nil {
			switch {
			case !fresh:
				continue
			case !errors.Is(err, ports.ErrSkip):
				return nil, err
			case missing:
				return nil, nil
			default:
				return l.Store.Decode(id, s)
			}
		}
		if next == nil {
			return nil, domain.Errorf(domain.EINTERNAL, "%s %s/%s: the update function returned no document", op, l.Name, id)
		}
		var raced bool
		if missing {
			err = l.Store.Insert(ctx, id, next)
			raced = domain.IsCode(err, domain.ECONFLICT)
		} else {
			err = l.Store.Replace(ctx, id, s, next)
			raced = errors.Is(err, ErrChanged)
		}
		switch {
		case err == nil:
			return next, nil
		case !raced:
			return nil, l.fail(err, op, id)
		case !fresh:
			// The recalled version was stale: expected, and no race lost.
			continue
		}
		lost++
		if err := l.backoff(ctx, op, id, lost); err != nil {
			return nil, err
		}
	}
}

// current returns the version to apply an update to: the recalled one when
// asked and known (fresh = false), else, for an upsert with CreateFirst, a
// guess that the document is missing (fresh = false), else a read (fresh =
// true).
func (l *Loop[T, S]) current(ctx context.Context, id string, recall, create bool) (*T, S, bool, error) {
	if recall {
		if r, ok := l.Store.(Recaller[T, S]); ok {
			if v, s, ok := r.Recall(id); ok {
				return v, s, false, nil
			}
		}
		if create && l.CreateFirst {
			var none S
			return nil, none, false, domain.Errorf(domain.ENOTFOUND, "%s %s: guessed missing", l.Name, id)
		}
	}
	v, s, err := l.Store.Load(ctx, id)
	return v, s, true, err
}

// backoff waits after the lost-th lost race, or gives up after the last
// one allowed.
func (l *Loop[T, S]) backoff(ctx context.Context, op, id string, lost int) error {
	if lost >= l.Attempts {
		return domain.Errorf(domain.EUNAVAILABLE, "%s %s/%s: lost %d races to concurrent writers", op, l.Name, id, lost)
	}
	var wait time.Duration
	if l.Backoff > 0 {
		wait = rand.N(time.Duration(lost) * l.Backoff)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return l.fail(ctx.Err(), op, id)
	case <-t.C:
		return nil
	}
}

func (l *Loop[T, S]) fail(err error, op, id string) error {
	if l.Fail == nil {
		return err
	}
	return l.Fail(err, op, id)
}
