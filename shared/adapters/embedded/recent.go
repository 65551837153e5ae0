package embedded

import "sync"

// recentDeliveries is how many deliveries recent keeps: the deliveries
// the chain is carrying at a moment (about a second's worth at 1,000/s),
// a few megabytes decoded.
const recentDeliveries = 2048

// recent keeps the documents of a collection that this process committed
// or read in a unit of work last, decoded, so that the next step of the
// chain starts from the delivery the step before it wrote rather than
// reading and decoding it again. It serves a collection's cached hook: a
// unit of work starts from it, and checks the version at its commit
// (written or only read; see work.Commit) or, when its step failed, in
// CheckReads, so a document another process changed since costs a rerun,
// not a decision on a stale copy. The oldest entry goes first when it is
// full.
type recent[T any] struct {
	clone func(*T) *T

	mu    sync.Mutex
	docs  map[string]recentDoc[T]
	order []string // ids in the order they were added, as a ring
	next  int      // where order's next id goes
}

type recentDoc[T any] struct {
	version int64
	v       *T
}

func newRecent[T any](size int, clone func(*T) *T) *recent[T] {
	return &recent[T]{clone: clone, docs: make(map[string]recentDoc[T], size), order: make([]string, size)}
}

// put records version of document id, unless a newer one is known; it
// keeps its own copy, since the writer keeps v.
func (r *recent[T]) put(id string, version int64, v *T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.docs[id]; ok {
		if version > cur.version {
			r.docs[id] = recentDoc[T]{version, r.clone(v)}
		}
		return
	}
	if old := r.order[r.next]; old != "" {
		delete(r.docs, old)
	}
	r.order[r.next] = id
	r.next = (r.next + 1) % len(r.order)
	r.docs[id] = recentDoc[T]{version, r.clone(v)}
}

// get returns a copy of document id at the version last recorded.
func (r *recent[T]) get(id string) (int64, *T, bool) {
	r.mu.Lock()
	d, ok := r.docs[id]
	r.mu.Unlock()
	if !ok {
		return 0, nil, false
	}
	return d.version, r.clone(d.v), true
}
