package embedded

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/tracing"
)

// Units of work. The documents and the queues share the SQLite file, so a
// step's writes, the messages it sends and the completion of its message
// can be one transaction: the outbox pattern with the outbox in the same
// file. A unit of work reads each document once, applies the step's
// updates to what it read, and at Commit writes every changed document on
// the condition that its version is still the one read. Nothing is held
// while the step runs: a lost race shows at Commit as ports.ErrStale, and
// the runtime runs the step again.

var _ ports.Transactional = (*Bus)(nil)

// Begin implements ports.Transactional.
func (b *Bus) Begin() ports.UnitOfWork { return b.db.Begin() }

// Begin starts a unit of work over the DB's store and bus.
func (db *DB) Begin() ports.UnitOfWork {
	w := &work{db: db, docs: make(map[string]*workDoc, 4)}
	st := db.store
	w.store = ports.Store{
		Deliveries: workDeliveries{workCollection[domain.Delivery]{w, st.Deliveries.(deliveries).collection}, st.Deliveries},
		Packages:   workCollection[domain.Package]{w, st.Packages.(*collection[domain.Package])},
		Fleet:      workFleet{workCollection[domain.Drone]{w, db.fleet.collection}, db.fleet},
		Accounts:   workCollection[domain.Account]{w, st.Accounts.(*collection[domain.Account])},
		APIKeys:    workDeletable[domain.APIKey]{workCollection[domain.APIKey]{w, st.APIKeys.(*collection[domain.APIKey])}},

		Confirmations: workDeletable[domain.ConfirmationBlob]{workCollection[domain.ConfirmationBlob]{w, st.Confirmations.(*collection[domain.ConfirmationBlob])}},
		// No step writes zones; a unit of work reads them as they are, but
		// for their version (workZones).
		Zones:     workZones{st.Zones.(*zones), w},
		Analytics: st.Analytics,
		// Nor pauses: dispatch reads them as they are.
		Pauses:       st.Pauses,
		Suppressions: workCollection[domain.Suppression]{w, st.Suppressions.(*collection[domain.Suppression])},
	}
	return w
}

type work struct {
	db    *DB
	store ports.Store
	docs  map[string]*workDoc // by collection + "\x00" + id
	dirty []*workDoc          // in the order they were first changed
	// cached are the documents taken from a collection's cache; Commit
	// checks that those it does not write are still at their version.
	cached []*workDoc
	// fresh says every read goes to the file (ReadFresh).
	fresh bool
}

// workDoc is one document as the unit of work knows it: as read (version 0
// when it did not exist) and as changed since.
type workDoc struct {
	coll, id string
	version  int64
	exists   bool   // as the step sees it now
	body     []byte // the JSON of value
	value    any    // *T, decoded from body; nil when !exists
	changed  bool
	written  func(version int64)  // tells the collection of the commit
	index    func(*writeTx) error // the collection's index write, if it has one
	// reread, set when the document came from the collection's cache
	// rather than the file, reads it from the file into the cache after a
	// commit found it stale, so that the step's next run sees it as it is.
	reread func(context.Context)
}

// Store implements ports.UnitOfWork.
func (w *work) Store() ports.Store { return w.store }

// Commit implements ports.UnitOfWork.
func (w *work) Commit(ctx context.Context, settle *ports.Delivered, out ...ports.Message) error {
	if settle != nil {
		if err := checkDelivered(settle); err != nil {
			return err
		}
	}
	queues, err := publishQueues(out)
	if err != nil {
		return err
	}
	tracing.Inject(ctx, out)
	if w.fresh && len(w.dirty) > 0 {
		// Its writes could go stale, and its run again would repeat what
		// it did outside the store.
		return fmt.Errorf("a step that acts outside the store may not write, and wrote %s %s", w.dirty[0].coll, w.dirty[0].id)
	}
	b := w.db.bus
	var stale, lost bool
	what := "commit a unit of work"
	if settle != nil {
		what = "complete " + settle.ID + " on " + settle.Queue
	}
	err = w.db.commit.write(ctx, what, func(tx *writeTx) error {
		stale, lost = false, false
		// A savepoint lets this unit of work undo its own writes when a
		// condition fails, without failing the group it commits in.
		if _, err := tx.stmt(w.db.st.workBegin).Exec(); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		var err error
		if stale, err = w.writeDocs(tx, now); err != nil {
			return err
		}
		if !stale && len(out) > 0 {
			if err := b.insert(tx, out); err != nil {
				return err
			}
		}
		if !stale && settle != nil {
			res, err := tx.stmt(w.db.st.msgComplete).Exec(settle.SequenceNumber, settle.Queue, settle.LockToken, now)
			if err != nil {
				return err
			}
			lost = affected(res, err) == 0
		}
		if stale || lost {
			if _, err := tx.stmt(w.db.st.workUndo).Exec(); err != nil {
				return err
			}
		}
		_, err = tx.stmt(w.db.st.workEnd).Exec()
		return err
	})
	switch {
	case err != nil:
		return err
	case stale:
		w.reread(ctx)
		return fmt.Errorf("%s: %w", what, ports.ErrStale)
	case lost:
		return lockLost("complete", settle)
	}
	for _, d := range w.dirty {
		d.written(d.version + 1)
	}
	for _, q := range queues {
		b.signal(q)
	}
	return nil
}

// writeDocs checks in tx that each document taken from a cache and not
// written is still at the version read, then writes the changed ones, each
// on condition of its version. It reports stale at the first document
// whose version is not the one the unit of work read, having written
// what came before it, which the caller undoes.
func (w *work) writeDocs(tx *writeTx, now int64) (stale bool, err error) {
	for _, d := range w.cached {
		if d.changed {
			continue // its write is conditional on the version
		}
		var version int64 // 0: no such row
		err := tx.stmt(w.db.st.docCheck).QueryRow(d.coll, d.id).Scan(&version)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		if version != d.version {
			return true, nil
		}
	}
	for _, d := range w.dirty {
		var res sql.Result
		if d.version == 0 {
			res, err = tx.stmt(w.db.st.docInsert).Exec(d.coll, d.id, string(d.body), now)
		} else {
			res, err = tx.stmt(w.db.st.docUpdate).Exec(string(d.body), now, d.coll, d.id, d.version)
		}
		n := affected(res, err)
		if err != nil {
			return false, err
		}
		if n == 0 {
			return true, nil
		}
		if d.index != nil {
			if err := d.index(tx); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

var (
	_ ports.ReadChecker = (*work)(nil)
	_ ports.FreshReader = (*work)(nil)
)

// ReadFresh implements ports.FreshReader: every document is read from the
// file, none from a collection's cache, so nothing the step reads is
// older than its read, and Commit has no cached read to check.
func (w *work) ReadFresh() { w.fresh = true }

// CheckReads implements ports.ReadChecker: it compares the version of
// each document taken from a cache with the file's, and on a difference
// brings the caches up to date and returns ErrStale.
func (w *work) CheckReads(ctx context.Context) error {
	for _, d := range w.cached {
		var version int64
		var body []byte
		err := w.db.st.docFind.QueryRowContext(ctx, d.coll, d.id).Scan(&version, &body)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return w.db.fail(err, "check %s/%s", d.coll, d.id)
		}
		if version != d.version {
			w.reread(ctx)
			return fmt.Errorf("%s %s changed since it was read: %w", d.coll, d.id, ports.ErrStale)
		}
	}
	return nil
}

// reread brings the caches the unit of work read from up to date.
func (w *work) reread(ctx context.Context) {
	for _, d := range w.cached {
		d.reread(ctx)
	}
}

// workZones is the zones seen through a unit of work: as the store keeps
// them, but for Version, which answers the version this process last read
// or wrote without reading the row, and which Commit (or CheckReads)
// checks like a document taken from a cache. A step thus never commits a
// decision made under an airspace that another process has changed since:
// it runs again under the new one.
type workZones struct {
	*zones
	w *work
}

// Version implements ports.Zones.
func (wz workZones) Version(ctx context.Context) (string, error) {
	key := wz.name + "\x00" + zoneVersionID
	d, ok := wz.w.docs[key]
	if !ok && wz.w.fresh {
		return wz.zones.Version(ctx)
	}
	if !ok {
		version, err := wz.knownVersion(ctx)
		if err != nil {
			return "", err
		}
		d = &workDoc{coll: wz.name, id: zoneVersionID, version: version, exists: version > 0,
			reread: func(ctx context.Context) { wz.readVersion(ctx) }}
		wz.w.docs[key] = d
		wz.w.cached = append(wz.w.cached, d)
	}
	return strconv.FormatInt(d.version, 10), nil
}

// workCollection is one collection seen through a unit of work.
type workCollection[T any] struct {
	w *work
	c *collection[T]
}

func (wc workCollection[T]) key(id string) string { return wc.c.name + "\x00" + id }

// doc returns what the unit of work knows of a document, reading it the
// first time. With cache set it may come from the collection's cache:
// Commit then writes it on condition that its version is still the one
// cached, or, if the step only read it, checks that it still is.
func (wc workCollection[T]) doc(ctx context.Context, id string, cache bool) (*workDoc, error) {
	key := wc.key(id)
	if d, ok := wc.w.docs[key]; ok {
		return d, nil
	}
	d := &workDoc{coll: wc.c.name, id: id}
	if cache && !wc.w.fresh && wc.c.cached != nil {
		if version, v, ok := wc.c.cached(id); ok {
			d.version, d.exists, d.value = version, true, v
			d.reread = wc.reread(id)
			wc.w.docs[key] = d
			wc.w.cached = append(wc.w.cached, d)
			return d, nil
		}
	}
	version, body, err := wc.c.read(ctx, id)
	switch {
	case domain.IsCode(err, domain.ENOTFOUND):
	case err != nil:
		return nil, err
	default:
		v, err := wc.c.decode(id, body)
		if err != nil {
			return nil, err
		}
		d.version, d.exists, d.body, d.value = version, true, body, v
		if cache {
			// The next unit of work to read it starts from the cache.
			wc.c.learned(id, version, v, body)
		}
	}
	wc.w.docs[key] = d
	return d, nil
}

// reread returns what brings the collection's cache up to date with the
// file's copy of document id.
func (wc workCollection[T]) reread(id string) func(context.Context) {
	return func(ctx context.Context) {
		version, body, err := wc.c.read(ctx, id)
		if err != nil {
			return // the next run reads it again
		}
		if v, err := wc.c.decode(id, body); err == nil {
			wc.c.learned(id, version, v, body)
		}
	}
}

// uncheckedCache reports whether d came from the collection's cache and
// is not to be written, so that a step that fails on it, and so does not
// commit, would have decided on a version nothing checked.
func (wc workCollection[T]) uncheckedCache(d *workDoc) bool {
	return d.reread != nil && !d.changed
}

// private returns a copy of the document as the step sees it, its own to
// change: cloned where the collection can, decoded from the JSON
// otherwise.
func (wc workCollection[T]) private(d *workDoc) (*T, error) {
	if wc.c.clone != nil {
		return wc.c.clone(d.value.(*T)), nil
	}
	return wc.c.decode(d.id, d.body)
}

// current returns a shallow copy of the document as the step sees it.
func (wc workCollection[T]) current(d *workDoc) *T {
	v := *d.value.(*T)
	return &v
}

// change records v as the document's new content.
func (wc workCollection[T]) change(d *workDoc, v *T) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", wc.c.name, d.id, err)
	}
	d.body, d.value, d.exists = body, v, true
	c, id := wc.c, d.id
	d.written = func(version int64) { c.learned(id, version, v, body) }
	if c.index != nil {
		d.index = func(tx *writeTx) error { return c.index(tx, id, v) }
	}
	if !d.changed {
		d.changed = true
		wc.w.dirty = append(wc.w.dirty, d)
	}
	return nil
}

func (wc workCollection[T]) notFound(id string) error {
	return domain.Errorf(domain.ENOTFOUND, "%s %s not found", wc.c.name, id)
}

// Find implements ports.Collection. The document may come from the
// collection's cache, which Commit checks.
func (wc workCollection[T]) Find(ctx context.Context, id string) (*T, error) {
	d, err := wc.doc(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if !d.exists {
		return nil, wc.notFound(id)
	}
	return wc.current(d), nil
}

// Create implements ports.Collection: ECONFLICT when the unit of work has
// read the document; one it has not read is not read now, and if it exists
// Commit fails with ErrStale (a create is an insert on condition that there
// is none), which saves a read on the common path.
func (wc workCollection[T]) Create(ctx context.Context, id string, v *T) error {
	key := wc.key(id)
	d, ok := wc.w.docs[key]
	if ok && d.exists {
		return domain.Errorf(domain.ECONFLICT, "%s %s already exists", wc.c.name, id)
	}
	if !ok {
		d = &workDoc{coll: wc.c.name, id: id}
		wc.w.docs[key] = d
	}
	return wc.change(d, v)
}

// Update implements ports.Collection. fn works on its own copy of the
// document, cloned or decoded from what the unit of work holds, so a
// failing fn changes nothing.
func (wc workCollection[T]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	return wc.update(ctx, id, fn, true)
}

// update is Update, starting from the collection's cache if cache is set.
func (wc workCollection[T]) update(ctx context.Context, id string, fn func(*T) error, cache bool) (*T, error) {
	d, err := wc.doc(ctx, id, cache)
	if err != nil {
		return nil, err
	}
	if !d.exists {
		return nil, wc.notFound(id)
	}
	v, err := wc.private(d)
	if err != nil {
		return nil, err
	}
	if err := fn(v); err != nil {
		if wc.uncheckedCache(d) {
			// fn decided on the cache's copy, which no write will now
			// check: it decides again on the file's.
			delete(wc.w.docs, wc.key(id))
			return wc.update(ctx, id, fn, false)
		}
		if errors.Is(err, ports.ErrSkip) {
			return wc.current(d), nil
		}
		return nil, err
	}
	if err := wc.change(d, v); err != nil {
		return nil, err
	}
	return wc.current(d), nil
}

// Upsert implements ports.Collection.
func (wc workCollection[T]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	return wc.upsert(ctx, id, fn, true)
}

// upsert is Upsert, starting from the collection's cache if cache is set.
func (wc workCollection[T]) upsert(ctx context.Context, id string, fn func(cur *T) (*T, error), cache bool) (*T, error) {
	d, err := wc.doc(ctx, id, cache)
	if err != nil {
		return nil, err
	}
	var cur *T
	if d.exists {
		if cur, err = wc.private(d); err != nil {
			return nil, err
		}
	}
	next, err := fn(cur)
	if err != nil {
		if wc.uncheckedCache(d) {
			delete(wc.w.docs, wc.key(id))
			return wc.upsert(ctx, id, fn, false)
		}
		if !errors.Is(err, ports.ErrSkip) {
			return nil, err
		}
		if !d.exists {
			return nil, nil
		}
		return wc.current(d), nil
	}
	if next == nil {
		return nil, domain.Errorf(domain.EINTERNAL, "upsert %s/%s: the update function returned no document", wc.c.name, id)
	}
	if err := wc.change(d, next); err != nil {
		return nil, err
	}
	return wc.current(d), nil
}

// workDeliveries adds the owner query, which reads the store as it is.
type workDeliveries struct {
	workCollection[domain.Delivery]
	base ports.Deliveries
}

// PageByOwner implements ports.Deliveries.
func (d workDeliveries) PageByOwner(ctx context.Context, f ports.DeliveryFilter) (ports.DeliveryPage, error) {
	return d.base.PageByOwner(ctx, f)
}

// ListByOwner implements ports.Deliveries.
func (d workDeliveries) ListByOwner(ctx context.Context, ownerID string, from, to time.Time, limit int) ([]*domain.Delivery, error) {
	return d.base.ListByOwner(ctx, ownerID, from, to, limit)
}

// workFleet adds the fleet's queries, which read the index and the store as
// they are.
type workFleet struct {
	workCollection[domain.Drone]
	base *fleet
}

// List implements ports.Fleet.
func (f workFleet) List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error) {
	return f.base.List(ctx, status, after, limit)
}

// Ready implements ports.Fleet.
func (f workFleet) Ready(ctx context.Context) error { return f.base.Ready(ctx) }

// NearestAvailable implements ports.Fleet. The index knows only committed
// writes, so the drones this unit of work changed are judged as it left
// them: one it freed (a reschedule gives its old drone back before looking
// for one) is a candidate at its distance, one it claimed is not.
func (f workFleet) NearestAvailable(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return f.nearest(loc, f.base.NearestAvailable(ctx, loc), (*domain.Drone).Dispatchable)
}

// NearestAwaitingTakeoff implements ports.Fleet, judging the drones this
// unit of work changed as NearestAvailable does.
func (f workFleet) NearestAwaitingTakeoff(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64] {
	return f.nearest(loc, f.base.NearestAwaitingTakeoff(ctx, loc), (*domain.Drone).AwaitsTakeoff)
}

// nearest merges the drones this unit of work changed for which keep
// holds into base, an index's walk from loc, in which they are skipped.
func (f workFleet) nearest(loc domain.Location, base iter.Seq2[*domain.Drone, float64], keep func(*domain.Drone) bool) iter.Seq2[*domain.Drone, float64] {
	changed := map[string]bool{}
	var own []candidate
	for _, d := range f.w.dirty {
		if d.coll != f.c.name {
			continue
		}
		changed[d.id] = true
		if dr := d.value.(*domain.Drone); keep(dr) {
			own = append(own, candidate{dr.Clone(), domain.DistanceKm(loc, dr.Location)})
		}
	}
	if len(changed) == 0 {
		return base
	}
	slices.SortFunc(own, func(a, b candidate) int { return cmp.Compare(a.km, b.km) })
	return func(yield func(*domain.Drone, float64) bool) {
		i := 0
		for dr, km := range base {
			if changed[dr.ID] {
				continue
			}
			for ; i < len(own) && own[i].km <= km; i++ {
				if !yield(own[i].drone, own[i].km) {
					return
				}
			}
			if !yield(dr, km) {
				return
			}
		}
		for ; i < len(own); i++ {
			if !yield(own[i].drone, own[i].km) {
				return
			}
		}
	}
}

// candidate is a drone at its distance from a pickup.
type candidate struct {
	drone *domain.Drone
	km    float64
}

// workDeletable is a collection in a unit of work that the port lets
// delete from (API keys, proof blobs). No step deletes, so a delete is not
// part of the unit: it is made at once.
type workDeletable[T any] struct {
	workCollection[T]
}

func (wd workDeletable[T]) Delete(ctx context.Context, id string) error { return wd.c.Delete(ctx, id) }
