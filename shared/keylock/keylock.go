// Package keylock hands out turns per key within a process: a mutex for
// each key, kept only while somebody holds or waits for it.
package keylock

import (
	"context"
	"sync"
)

// Turns hands out one turn at a time per key; the zero value is ready. The
// optimistic-concurrency loop takes one per document around its
// read-modify-writes (left to the loop alone, eight goroutines updating one
// document starve each other, because whoever just won re-reads first and
// wins again), and proof-of-delivery uploads one per delivery. Other
// processes cannot see them: what they guard must still be guarded there
// by versions (ETags).
type Turns struct {
	mu sync.Mutex
	m  map[string]*turn
}

type turn struct {
	sem     chan struct{} // holds a token while a writer has the turn
	waiters int           // writers holding or waiting for the turn
}

// Take waits for key's turn and returns the function that ends it; waiting
// ends with ctx, so an update function that updates its own document fails
// instead of hanging.
func (ts *Turns) Take(ctx context.Context, key string) (func(), error) {
	ts.mu.Lock()
	if ts.m == nil {
		ts.m = make(map[string]*turn)
	}
	t := ts.m[key]
	if t == nil {
		t = &turn{sem: make(chan struct{}, 1)}
		ts.m[key] = t
	}
	t.waiters++
	ts.mu.Unlock()

	release := func() {
		ts.mu.Lock()
		if t.waiters--; t.waiters == 0 {
			delete(ts.m, key)
		}
		ts.mu.Unlock()
	}
	select {
	case t.sem <- struct{}{}:
		return func() { <-t.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
