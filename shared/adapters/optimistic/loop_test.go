package optimistic_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/optimistic"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/keylock"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// doc is the document the tests store.
type doc struct {
	ID string
	N  int
}

// version is a doc as stored: its version number and a copy of it.
type version struct {
	n   int
	doc doc
}

// memStore is an optimistic.Store in a map. Its hooks run between a read
// and the write that follows it, where another writer's write would land.
type memStore struct {
	mu     sync.Mutex
	docs   map[string]version
	writes int

	afterLoad    func()
	beforeInsert func(id string)
	beforeWrite  func(id string)
}

func newMemStore() *memStore { return &memStore{docs: map[string]version{}} }

func (m *memStore) Load(_ context.Context, id string) (*doc, version, error) {
	if m.afterLoad != nil {
		defer m.afterLoad()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.docs[id]
	if !ok {
		return nil, version{}, domain.Errorf(domain.ENOTFOUND, "doc %s not found", id)
	}
	d := v.doc
	return &d, v, nil
}

func (m *memStore) Decode(_ string, s version) (*doc, error) {
	d := s.doc
	return &d, nil
}

func (m *memStore) Insert(_ context.Context, id string, v *doc) error {
	if m.beforeInsert != nil {
		m.beforeInsert(id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.docs[id]; ok {
		return domain.Errorf(domain.ECONFLICT, "doc %s already exists", id)
	}
	m.docs[id] = version{n: 1, doc: *v}
	m.writes++
	return nil
}

func (m *memStore) Replace(_ context.Context, id string, s version, v *doc) error {
	if m.beforeWrite != nil {
		m.beforeWrite(id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.docs[id]
	if !ok || cur.n != s.n {
		return fmt.Errorf("doc %s: %w", id, optimistic.ErrChanged)
	}
	m.docs[id] = version{n: cur.n + 1, doc: *v}
	m.writes++
	return nil
}

// put stores d as another writer would, bumping the version.
func (m *memStore) put(d doc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs[d.ID] = version{n: m.docs[d.ID].n + 1, doc: d}
}

func (m *memStore) get(t *testing.T, id string) doc {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.docs[id]
	require.True(t, ok, "doc %s is stored", id)
	return v.doc
}

// recalling adds a memory of versions to memStore, which may be stale.
type recalling struct {
	*memStore
	known map[string]version
}

func (r *recalling) Recall(id string) (*doc, version, bool) {
	v, ok := r.known[id]
	if !ok {
		return nil, version{}, false
	}
	d := v.doc
	return &d, v, true
}

// loop runs over s with no waiting between attempts; fail records the
// operations it was asked to describe.
func loop(s optimistic.Store[doc, version], attempts int) (*optimistic.Loop[doc, version], *[]string) {
	var failed []string
	return &optimistic.Loop[doc, version]{
		Name: "docs", Store: s, Turns: &keylock.Turns{}, Attempts: attempts,
		Fail: func(err error, op, id string) error {
			failed = append(failed, op)
			return fmt.Errorf("%s docs/%s: %w", op, id, err)
		},
	}, &failed
}

func bump(d *doc) error { d.N++; return nil }

// createOrAddTen is an upsert of document a: N 1 when new, 10 more when not.
func createOrAddTen(cur *doc) (*doc, error) {
	if cur == nil {
		return &doc{ID: "a", N: 1}, nil
	}
	cur.N += 10
	return cur, nil
}

func TestUpdateAfterALostRaceRunsAgainOnTheNewVersion(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a"})
	l, _ := loop(s, 4)
	runs := 0
	got, err := l.Update(context.Background(), "a", func(d *doc) error {
		runs++
		if runs == 1 {
			s.put(doc{ID: "a", N: 10})
		}
		d.N++
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, runs, "fn runs again after the lost race")
	assert.Equal(t, 11, got.N)
	assert.Equal(t, doc{ID: "a", N: 11}, s.get(t, "a"))
	assert.Equal(t, 1, s.writes)
}

func TestSkipReturnsTheStoredDocumentAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a", N: 3})
	l, _ := loop(s, 4)

	got, err := l.Update(context.Background(), "a", func(d *doc) error { d.N = 99; return ports.ErrSkip })
	require.NoError(t, err)
	assert.Equal(t, &doc{ID: "a", N: 3}, got, "the change fn made before skipping is discarded")

	got, err = l.Upsert(context.Background(), "a", func(cur *doc) (*doc, error) { cur.N = 99; return nil, ports.ErrSkip })
	require.NoError(t, err)
	assert.Equal(t, &doc{ID: "a", N: 3}, got)

	got, err = l.Upsert(context.Background(), "missing", func(cur *doc) (*doc, error) { return nil, ports.ErrSkip })
	require.NoError(t, err)
	assert.Nil(t, got, "a skipped upsert of a missing document returns none")

	assert.Zero(t, s.writes)
}

func TestAnUpdateFunctionErrorAbortsAsItIs(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a"})
	l, failed := loop(s, 4)
	boom := errors.New("boom")

	_, err := l.Update(context.Background(), "a", func(d *doc) error { d.N++; return boom })
	assert.Same(t, boom, err)
	_, err = l.Upsert(context.Background(), "a", func(cur *doc) (*doc, error) { cur.N++; return cur, boom })
	assert.Same(t, boom, err)

	assert.Zero(t, s.writes)
	assert.Equal(t, doc{ID: "a"}, s.get(t, "a"))
	assert.Empty(t, *failed, "fn's own error is not the store's to describe")
}

func TestGivesUpAfterAttemptsLostRaces(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a"})
	s.beforeWrite = func(id string) { s.put(doc{ID: id}) }
	l, _ := loop(s, 3)
	runs := 0
	_, err := l.Update(context.Background(), "a", func(d *doc) error { runs++; return bump(d) })
	assert.True(t, domain.IsCode(err, domain.EUNAVAILABLE), "%v", err)
	assert.ErrorContains(t, err, "update docs/a: lost 3 races")
	assert.Equal(t, 3, runs)

	runs = 0
	_, err = l.Upsert(context.Background(), "a", func(cur *doc) (*doc, error) { runs++; return cur, bump(cur) })
	assert.True(t, domain.IsCode(err, domain.EUNAVAILABLE), "%v", err)
	assert.ErrorContains(t, err, "upsert docs/a: lost 3 races")
	assert.Equal(t, 3, runs)
	assert.Zero(t, s.writes)
}

func TestBackingOffEndsWithTheContext(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	s.beforeWrite = func(id string) { s.put(doc{ID: id}); cancel() }
	l, failed := loop(s, 4)
	l.Backoff = time.Hour
	_, err := l.Update(ctx, "a", bump)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []string{"update"}, *failed, "the adapter describes the interruption")
}

func TestUpsertCreatesThenUpdates(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	l, _ := loop(s, 4)

	got, err := l.Upsert(context.Background(), "a", createOrAddTen)
	require.NoError(t, err)
	assert.Equal(t, &doc{ID: "a", N: 1}, got, "created")
	got, err = l.Upsert(context.Background(), "a", createOrAddTen)
	require.NoError(t, err)
	assert.Equal(t, &doc{ID: "a", N: 11}, got, "updated")
	assert.Equal(t, doc{ID: "a", N: 11}, s.get(t, "a"))
	assert.Equal(t, 2, s.writes)

	_, err = l.Upsert(context.Background(), "b", func(*doc) (*doc, error) { return nil, nil })
	assert.True(t, domain.IsCode(err, domain.EINTERNAL), "an upsert that returns no document: %v", err)
}

func TestUpsertThatLosesTheCreateRunsAgainAsAnUpdate(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.beforeInsert = func(id string) { s.put(doc{ID: id, N: 5}) }
	l, _ := loop(s, 4)
	var seen []bool
	got, err := l.Upsert(context.Background(), "a", func(cur *doc) (*doc, error) {
		seen = append(seen, cur != nil)
		if cur == nil {
			cur = &doc{ID: "a"}
		}
		cur.N++
		return cur, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true}, seen, "fn saw no document, then the one created meanwhile")
	assert.Equal(t, &doc{ID: "a", N: 6}, got)
	assert.Equal(t, doc{ID: "a", N: 6}, s.get(t, "a"))
}

// TestCreateFirstSavesTheReadOfANewDocument: with CreateFirst an upsert
// of a missing document inserts without reading; one of an existing
// document loses the insert, reads and runs fn again on what it read, with
// no race counted.
func TestCreateFirstSavesTheReadOfANewDocument(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	loads := 0
	s.afterLoad = func() { loads++ }
	l, _ := loop(s, 1)
	l.CreateFirst = true
	var seen []bool
	upsert := func(cur *doc) (*doc, error) {
		seen = append(seen, cur != nil)
		return createOrAddTen(cur)
	}
	got, err := l.Upsert(context.Background(), "a", upsert)
	require.NoError(t, err)
	assert.Equal(t, &doc{ID: "a", N: 1}, got, "created")
	assert.Equal(t, 0, loads, "a new document is not read")

	got, err = l.Upsert(context.Background(), "a", upsert)
	require.NoError(t, err, "the lost insert is no lost race, even with one attempt allowed")
	assert.Equal(t, &doc{ID: "a", N: 11}, got, "updated")
	assert.Equal(t, 1, loads, "an existing document is read after the insert fails")
	assert.Equal(t, []bool{false, false, true}, seen)
	assert.Equal(t, doc{ID: "a", N: 11}, s.get(t, "a"))
	assert.Equal(t, 2, s.writes)

	_, err = l.Update(context.Background(), "b", bump)
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "an update never guesses: %v", err)
}

func TestUpdateOfAMissingDocument(t *testing.T) {
	t.Parallel()
	l, failed := loop(newMemStore(), 4)
	called := false
	_, err := l.Update(context.Background(), "a", func(*doc) error { called = true; return nil })
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "%v", err)
	assert.ErrorContains(t, err, "update docs/a: ")
	assert.False(t, called, "fn never sees a missing document in Update")
	assert.Equal(t, []string{"update"}, *failed)
}

func TestAStaleRecalledVersionCostsNoAttempt(t *testing.T) {
	t.Parallel()
	s := &recalling{memStore: newMemStore(), known: map[string]version{}}
	s.put(doc{ID: "a", N: 1})
	s.known["a"] = version{n: 1, doc: doc{ID: "a", N: 1}}
	s.put(doc{ID: "a", N: 2}) // another writer: the recalled version is stale

	// One attempt: a lost race would be fatal, a stale memory is not.
	l, _ := loop(s, 1)
	var saw []int
	got, err := l.Update(context.Background(), "a", func(d *doc) error { saw = append(saw, d.N); return bump(d) })
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, saw, "fn ran on the recalled version, then on a fresh read")
	assert.Equal(t, 3, got.N)

	// An fn that refuses a recalled version is asked again on a fresh one.
	s.known["a"] = version{n: 1, doc: doc{ID: "a", N: 1}}
	errOld := errors.New("too old")
	saw = nil
	got, err = l.Update(context.Background(), "a", func(d *doc) error {
		saw = append(saw, d.N)
		if d.N < 3 {
			return errOld
		}
		return ports.ErrSkip
	})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 3}, saw)
	assert.Equal(t, 3, got.N)
}

func TestWritersInOneProcessTakeTurns(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	s.put(doc{ID: "a"})
	// Between read and write, let the others run: without turns they
	// would read the same version, and with one attempt each a lost race
	// would fail its update.
	s.afterLoad = func() { time.Sleep(20 * time.Microsecond) }
	l, _ := loop(s, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				_, err := l.Update(context.Background(), "a", bump)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 200, s.get(t, "a").N)
}
