package embedded

import "sync"

// recentDocs is how many documents a collection's recent keeps: at
// 1,000 deliveries/s the chain carries about a hundred at a time from
// ingest to Scheduled (its p99 is under 100 ms), and each of the chain's
// steps finds the delivery the step before it wrote; under a backlog the
// first step misses and reads the file, as without the cache. Half a
// second's worth is under a megabyte of JSON.
const recentDocs = 512

// recent keeps the JSON of the documents of a collection that this
// process committed, or read in a unit of work, last, so that the next
// step of the chain starts from the delivery the step before it wrote
// rather than reading it from the file again. It serves a collection's
// cached hook: a unit of work starts from it and checks the version at its
// commit (written or only read; see work.Commit) or, when its step failed,
// in CheckReads, so a document another process changed since costs a
// rerun, not a decision on a stale copy. It holds bytes, not decoded
// values, so that it costs the collector nothing to scan and a write
// nothing to copy. The oldest entry goes first when it is full.
type recent struct {
	mu    sync.Mutex
	docs  map[string]recentDoc
	order []string // ids in the order they were added, as a ring
	next  int      // where order's next id goes
}

type recentDoc struct {
	version int64
	body    []byte // never changed once stored
}

func newRecent(size int) *recent {
	return &recent{docs: make(map[string]recentDoc, size), order: make([]string, size)}
}

// put records version of document id, unless a newer one is known. The
// caller must not change body afterwards.
func (r *recent) put(id string, version int64, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.docs[id]; ok {
		if version > cur.version {
			r.docs[id] = recentDoc{version, body}
		}
		return
	}
	if old := r.order[r.next]; old != "" {
		delete(r.docs, old)
	}
	r.order[r.next] = id
	r.next = (r.next + 1) % len(r.order)
	r.docs[id] = recentDoc{version, body}
}

// get returns document id's JSON at the version last recorded; the
// caller must not change it.
func (r *recent) get(id string) (int64, []byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.docs[id]
	return d.version, d.body, ok
}
