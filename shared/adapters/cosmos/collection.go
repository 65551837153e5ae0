package cosmos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/adapters/optimistic"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/keylock"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// maxAttempts and backoffStep bound the optimistic-concurrency loop (see
// optimistic.Loop). Writers in this process take turns, so only other
// processes make it lose, each race at the cost of a round trip.
const (
	maxAttempts = 16
	backoffStep = 2 * time.Millisecond
)

// cacheSize bounds the versions each collection remembers; a delivery's
// steps follow each other within milliseconds, so a few thousand recent
// documents catch nearly every read-then-update.
const cacheSize = 4096

// collection stores the documents of one aggregate in one container whose
// partition key is the document id, unless locate says otherwise.
type collection[T any] struct {
	c     *azcosmos.ContainerClient
	name  string
	loop  optimistic.Loop[T, version]
	turns keylock.Turns
	cache versions

	// locate, when set, maps the key the collection is used with to the
	// document's id and partition key, for a container partitioned by
	// something else than the id; the key then names both (see ownerKey).
	locate func(key string) (id string, pk azcosmos.PartitionKey)

	// observe, when set, learns every version this Store reads inside a
	// turn or writes, in order for each document, before fn can change v.
	observe func(id string, etag azcore.ETag, v *T)
	// hint, when set, offers a version known outside the cache.
	hint func(id string) (version, bool)
	// carried says the versions this collection reads and writes are
	// noted for the step at hand and its outputs (ports.Versions), and a
	// version its message carries may stand in for Find's read.
	carried bool
}

func newCollection[T any](cc *azcosmos.ContainerClient, name string) *collection[T] {
	c := &collection[T]{c: cc, name: name}
	c.loop = optimistic.Loop[T, version]{Name: name, Store: c, Turns: &c.turns,
		Attempts: maxAttempts, Backoff: backoffStep, Fail: c.fail}
	return c
}

// version is a document as stored: its JSON and the ETag that makes a
// write conditional on it.
type version struct {
	etag    azcore.ETag
	body    []byte
	session string // the session token of the write that made it, if ours
}

var (
	_ ports.Collection[domain.Delivery]             = (*collection[domain.Delivery])(nil)
	_ optimistic.Recaller[domain.Delivery, version] = (*collection[domain.Delivery])(nil)
)

// Find implements ports.Collection. It reads, because a caller deciding
// what to do next needs the stored state, not a remembered one; except
// that where the step's message names the version this process remembers
// (ports.CarriedVersion), it starts from that version as if it had run
// when the message was sent: its writes are conditional, so a document
// changed since fails them and is read again.
func (c *collection[T]) Find(ctx context.Context, id string) (*T, error) {
	if c.carried {
		if want, ok := ports.CarriedVersion(ctx, c.name, id); ok {
			if known, ok := c.cache.get(id); ok && string(known.etag) == want {
				return c.decode(id, known.body)
			}
		}
	}
	cur, err := c.read(ctx, id)
	if err != nil {
		return nil, err
	}
	return c.decode(id, cur.body)
}

// Create implements ports.Collection. It takes the document's turn, so that
// what the cache and the observer learn of one document arrives in order.
func (c *collection[T]) Create(ctx context.Context, id string, v *T) error {
	unlock, err := c.turns.Take(ctx, id)
	if err != nil {
		return c.fail(err, "create", id)
	}
	defer unlock()
	return c.Insert(ctx, id, v)
}

// Update implements ports.Collection. It starts from the version this Store
// last saw, when it has one (see Recall).
func (c *collection[T]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	return c.loop.Update(ctx, id, fn)
}

// Upsert implements ports.Collection, creating with a conditional create so
// that of two concurrent creators one loses with 409 and runs again as an
// update.
func (c *collection[T]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	return c.loop.Upsert(ctx, id, fn)
}

// Recall implements optimistic.Recaller with the version the hint offers,
// else the one the cache remembers: a conditional write on it saves the
// read when nobody wrote since.
func (c *collection[T]) Recall(id string) (*T, version, bool) {
	cur, ok := version{}, false
	if c.hint != nil {
		cur, ok = c.hint(id)
	}
	if !ok {
		cur, ok = c.cache.get(id)
	}
	if !ok {
		return nil, version{}, false
	}
	v, err := c.decode(id, cur.body)
	if err != nil {
		return nil, version{}, false
	}
	return v, cur, true
}

// Load implements optimistic.Store with a point read, and tells the
// observer what it found before the update function can change it.
func (c *collection[T]) Load(ctx context.Context, id string) (*T, version, error) {
	cur, err := c.read(ctx, id)
	if err != nil {
		return nil, version{}, err
	}
	v, err := c.decode(id, cur.body)
	if err != nil {
		return nil, version{}, err
	}
	if c.observe != nil {
		c.observe(id, cur.etag, v)
	}
	return v, cur, nil
}

// Decode implements optimistic.Store.
func (c *collection[T]) Decode(id string, s version) (*T, error) { return c.decode(id, s.body) }

// read is a point read that remembers what it found.
func (c *collection[T]) read(ctx context.Context, id string) (version, error) {
	var o *azcosmos.ItemOptions
	if known, ok := c.cache.get(id); ok && known.session != "" {
		// Our own last write must be visible to us even on a replica
		// that trails it (Session consistency needs the token for that).
		o = &azcosmos.ItemOptions{SessionToken: &known.session}
	}
	docID, pk := c.where(id)
	resp, err := c.c.ReadItem(ctx, pk, docID, o)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			c.cache.drop(id)
		}
		return version{}, c.fail(err, "read", id)
	}
	v := version{etag: resp.ETag, body: resp.Value}
	c.cache.put(id, v)
	c.note(ctx, id, v.etag)
	return v, nil
}

// Insert implements optimistic.Store; the caller holds the document's turn.
func (c *collection[T]) Insert(ctx context.Context, id string, v *T) error {
	body, err := c.encode(id, v)
	if err != nil {
		return err
	}
	_, pk := c.where(id)
	resp, err := c.c.CreateItem(ctx, pk, body, nil)
	if err != nil {
		return c.fail(err, "create", id)
	}
	c.written(ctx, id, resp, body, v)
	return nil
}

// Replace implements optimistic.Store, writing v if the stored ETag is
// still s's; the caller holds the document's turn. A 404 is a lost race
// too: the document was removed since it was read, which the next read
// reports.
func (c *collection[T]) Replace(ctx context.Context, id string, s version, v *T) error {
	body, err := c.encode(id, v)
	if err != nil {
		return err
	}
	docID, pk := c.where(id)
	resp, err := c.c.ReplaceItem(ctx, pk, docID, body, &azcosmos.ItemOptions{IfMatchEtag: &s.etag})
	if err != nil {
		status := statusOf(err)
		if status != 0 {
			c.cache.drop(id)
		}
		if status == http.StatusPreconditionFailed || status == http.StatusNotFound {
			return fmt.Errorf("%w: %w", optimistic.ErrChanged, err)
		}
		return c.fail(err, "replace", id)
	}
	c.written(ctx, id, resp, body, v)
	return nil
}

// note tells the step at hand which version of a document it read or
// wrote, when this collection's versions are carried.
func (c *collection[T]) note(ctx context.Context, id string, etag azcore.ETag) {
	if c.carried {
		ports.NoteVersion(ctx, c.name, id, string(etag))
	}
}

// written remembers a successful write and tells the observer.
func (c *collection[T]) written(ctx context.Context, id string, resp azcosmos.ItemResponse, body []byte, v *T) {
	c.note(ctx, id, resp.ETag)
	if resp.ETag == "" {
		// Without the new ETag a remembered version could only fail.
		c.cache.drop(id)
	} else {
		s := ""
		if resp.SessionToken != nil {
			s = *resp.SessionToken
		}
		c.cache.put(id, version{etag: resp.ETag, body: body, session: s})
	}
	if c.observe != nil {
		c.observe(id, resp.ETag, v)
	}
}

// remove deletes a document; a missing one is no error.
func (c *collection[T]) remove(ctx context.Context, key string) error {
	if err := c.delete(ctx, key); err != nil && statusOf(err) != http.StatusNotFound {
		return c.fail(err, "delete", key)
	}
	return nil
}

// Delete removes the document stored under id, or returns ENOTFOUND.
func (c *collection[T]) Delete(ctx context.Context, id string) error {
	err := c.delete(ctx, id)
	if statusOf(err) == http.StatusNotFound {
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", c.name, id)
	}
	if err != nil {
		return c.fail(err, "delete", id)
	}
	return nil
}

// delete deletes a document under its turn and forgets its version. It
// returns Cosmos DB's error unmapped, for the caller to say what a missing
// document means.
func (c *collection[T]) delete(ctx context.Context, key string) error {
	unlock, err := c.turns.Take(ctx, key)
	if err != nil {
		return c.fail(err, "delete", key)
	}
	defer unlock()
	docID, pk := c.where(key)
	_, err = c.c.DeleteItem(ctx, pk, docID, nil)
	c.cache.drop(key)
	return err
}

// where returns the id and partition key of the document stored under key.
func (c *collection[T]) where(key string) (string, azcosmos.PartitionKey) {
	if c.locate != nil {
		return c.locate(key)
	}
	return key, partition(key)
}

// encode marshals v and makes sure its id is the document id, which the
// container also uses as partition key unless locate says otherwise.
func (c *collection[T]) encode(key string, v *T) ([]byte, error) {
	id, _ := c.where(key)
	body, err := json.Marshal(v)
	if err != nil {
		return nil, domain.Errorf(domain.EINTERNAL, "encode %s/%s: %v", c.name, id, err)
	}
	var probe struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || len(body) < 2 || body[0] != '{' {
		return nil, domain.Errorf(domain.EINTERNAL, "encode %s/%s: a document must be a JSON object", c.name, id)
	}
	switch {
	case probe.ID == nil:
		// A type without an id field still needs one in Cosmos; decoding
		// ignores it again.
		idJSON, _ := json.Marshal(id)
		var b bytes.Buffer
		b.WriteString(`{"id":`)
		b.Write(idJSON)
		if !bytes.Equal(bytes.TrimSpace(body[1:]), []byte("}")) {
			b.WriteByte(',')
		}
		b.Write(body[1:])
		return b.Bytes(), nil
	case *probe.ID != id:
		return nil, domain.Errorf(domain.EINTERNAL, "encode %s/%s: the document's id is %q", c.name, id, *probe.ID)
	}
	return body, nil
}

func (c *collection[T]) decode(id string, body []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(body, v); err != nil {
		return nil, domain.Errorf(domain.EINTERNAL, "decode %s/%s: %v", c.name, id, err)
	}
	return v, nil
}

// fail maps a Cosmos error to the port's codes. A 404 that says the owner
// (database or container) is missing is a deployment fault, not a missing
// document, so it must not let a step conclude that a delivery is gone.
func (c *collection[T]) fail(err error, op, id string) error {
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	switch statusOf(err) {
	case http.StatusNotFound:
		if sub := subStatusOf(err); sub != "" && sub != "0" {
			return unavailable(err, "%s %s/%s: the container or database is missing (sub-status %s)", op, c.name, id, sub)
		}
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", c.name, id)
	case http.StatusConflict:
		return domain.Errorf(domain.ECONFLICT, "%s %s already exists", c.name, id)
	}
	// A 429 arrives here only after the SDK's retry policy has waited out
	// x-ms-retry-after-ms and retried (see the package doc): the message
	// queue's redelivery is the next, slower, back-off. The message is a
	// caller's too (a 503's detail): it says what failed and that a retry
	// is the answer.
	return unavailable(err, "the store is unavailable (%s %s/%s); retry", op, c.name, id)
}

func partition(id string) azcosmos.PartitionKey { return azcosmos.NewPartitionKeyString(id) }

// versions remembers the last version of recently used documents.
type versions struct {
	mu sync.Mutex
	m  map[string]version
}

func (vs *versions) get(id string) (version, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v, ok := vs.m[id]
	return v, ok
}

func (vs *versions) put(id string, v version) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.m == nil {
		vs.m = make(map[string]version)
	}
	if _, ok := vs.m[id]; !ok && len(vs.m) >= cacheSize {
		// Evict an arbitrary entry: map order is random enough, and a
		// miss only costs the read the cache would have saved.
		for k := range vs.m {
			delete(vs.m, k)
			break
		}
	}
	vs.m[id] = v
}

func (vs *versions) drop(id string) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	delete(vs.m, id)
}
