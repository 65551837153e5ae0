package cosmos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/adapters/optimistic"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// maxAttempts bounds the optimistic-concurrency loop: a document this
// contended is better reported as EUNAVAILABLE, so the message is retried
// later, than fought over indefinitely. Writers in this process take turns
// (see package turns), so only other processes make it lose.
const maxAttempts = 16

// cacheSize bounds the versions each collection remembers; a delivery's
// steps follow each other within milliseconds, so a few thousand recent
// documents catch nearly every read-then-update.
const cacheSize = 4096

// collection stores the documents of one aggregate in one container whose
// partition key is the document id.
type collection[T any] struct {
	c     *azcosmos.ContainerClient
	name  string
	turns optimistic.Turns
	cache versions

	// observe, when set, learns every version this Store reads inside a
	// turn or writes, in order for each document, before fn can change v.
	observe func(id string, etag azcore.ETag, v *T)
	// hint, when set, offers a version known outside the cache.
	hint func(id string) (version, bool)
}

func newCollection[T any](c *azcosmos.ContainerClient, name string) *collection[T] {
	return &collection[T]{c: c, name: name}
}

// version is a document as stored: its JSON and the ETag that makes a
// write conditional on it.
type version struct {
	etag    azcore.ETag
	body    []byte
	session string // the session token of the write that made it, if ours
}

var _ ports.Collection[domain.Delivery] = (*collection[domain.Delivery])(nil)

// Find implements ports.Collection. It always reads, because a caller
// deciding what to do next needs the stored state, not a remembered one.
func (c *collection[T]) Find(ctx context.Context, id string) (*T, error) {
	cur, err := c.read(ctx, id)
	if err != nil {
		return nil, err
	}
	return c.decode(id, cur.body)
}

// Create implements ports.Collection.
func (c *collection[T]) Create(ctx context.Context, id string, v *T) error {
	unlock, err := c.turns.Take(ctx, id)
	if err != nil {
		return domain.Unavailable(err, "create %s/%s", c.name, id)
	}
	defer unlock()
	if err := c.create(ctx, id, v); err != nil {
		return c.fail(err, "create", id)
	}
	return nil
}

// Update implements ports.Collection.
//
// It first applies fn to the version this Store last saw, when it has one,
// and writes conditionally on that version's ETag: when nobody wrote since,
// that saves the read. Only a successful write proves a remembered version
// current, so an fn that fails or skips on one is judged again on a fresh
// read.
func (c *collection[T]) Update(ctx context.Context, id string, fn func(*T) error) (*T, error) {
	unlock, err := c.turns.Take(ctx, id)
	if err != nil {
		return nil, domain.Unavailable(err, "update %s/%s", c.name, id)
	}
	defer unlock()
	remembered := true
	for attempt := 1; ; {
		cur, fresh, err := c.current(ctx, id, remembered)
		remembered = false
		if err != nil {
			return nil, err
		}
		v, err := c.decode(id, cur.body)
		if err != nil {
			return nil, err
		}
		if fresh && c.observe != nil {
			c.observe(id, cur.etag, v)
		}
		if err := fn(v); err != nil {
			switch {
			case !fresh:
				continue
			case errors.Is(err, ports.ErrSkip):
				// fn may have changed v before giving up.
				return c.decode(id, cur.body)
			default:
				return nil, err
			}
		}
		err = c.replace(ctx, id, cur.etag, v)
		switch status := statusOf(err); {
		case err == nil:
			return v, nil
		case !fresh && (status == http.StatusPreconditionFailed || status == http.StatusNotFound):
			// The remembered version was stale: expected, and no race lost.
			continue
		case status == http.StatusPreconditionFailed:
			if err := c.backoff(ctx, "update", id, &attempt); err != nil {
				return nil, err
			}
		default:
			return nil, c.fail(err, "replace", id)
		}
	}
}

// Upsert implements ports.Collection, creating with a conditional create so
// that of two concurrent creators one loses with 409 and runs again as an
// update.
func (c *collection[T]) Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error) {
	unlock, err := c.turns.Take(ctx, id)
	if err != nil {
		return nil, domain.Unavailable(err, "upsert %s/%s", c.name, id)
	}
	defer unlock()
	remembered := true
	for attempt := 1; ; {
		cur, fresh, err := c.current(ctx, id, remembered)
		remembered = false
		missing := domain.IsCode(err, domain.ENOTFOUND)
		if err != nil && !missing {
			return nil, err
		}
		var v *T
		if !missing {
			if v, err = c.decode(id, cur.body); err != nil {
				return nil, err
			}
			if fresh && c.observe != nil {
				c.observe(id, cur.etag, v)
			}
		}
		next, err := fn(v)
		if err != nil {
			switch {
			case !fresh:
				continue
			case !errors.Is(err, ports.ErrSkip):
				return nil, err
			case missing:
				return nil, nil
			default:
				return c.decode(id, cur.body)
			}
		}
		if next == nil {
			return nil, domain.Errorf(domain.EINTERNAL, "upsert %s/%s: the update function returned no document", c.name, id)
		}
		op := "replace"
		if missing {
			op = "create"
			err = c.create(ctx, id, next)
		} else {
			err = c.replace(ctx, id, cur.etag, next)
		}
		switch status := statusOf(err); {
		case err == nil:
			return next, nil
		case !fresh && (status == http.StatusPreconditionFailed || status == http.StatusNotFound):
			continue
		case status == http.StatusPreconditionFailed, status == http.StatusNotFound && op == "replace",
			status == http.StatusConflict && op == "create":
			// Somebody wrote, deleted or created it since the read.
			if err := c.backoff(ctx, "upsert", id, &attempt); err != nil {
				return nil, err
			}
		default:
			return nil, c.fail(err, op, id)
		}
	}
}

// current returns the version to apply an update to: the remembered one
// when asked and known (fresh = false), else a read (fresh = true).
func (c *collection[T]) current(ctx context.Context, id string, remembered bool) (version, bool, error) {
	if remembered {
		if c.hint != nil {
			if v, ok := c.hint(id); ok {
				return v, false, nil
			}
		}
		if v, ok := c.cache.get(id); ok {
			return v, false, nil
		}
	}
	v, err := c.read(ctx, id)
	return v, true, err
}

// read is a point read that remembers what it found.
func (c *collection[T]) read(ctx context.Context, id string) (version, error) {
	var o *azcosmos.ItemOptions
	if known, ok := c.cache.get(id); ok && known.session != "" {
		// Our own last write must be visible to us even on a replica
		// that trails it (Session consistency needs the token for that).
		o = &azcosmos.ItemOptions{SessionToken: &known.session}
	}
	resp, err := c.c.ReadItem(ctx, partition(id), id, o)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			c.cache.drop(id)
		}
		return version{}, c.fail(err, "read", id)
	}
	v := version{etag: resp.ETag, body: resp.Value}
	c.cache.put(id, v)
	return v, nil
}

// create stores a new document; the caller holds the document's turn. The
// raw error comes back so the caller can tell a lost race (409) from a
// failure.
func (c *collection[T]) create(ctx context.Context, id string, v *T) error {
	body, err := c.encode(id, v)
	if err != nil {
		return err
	}
	resp, err := c.c.CreateItem(ctx, partition(id), body, nil)
	if err != nil {
		return err
	}
	c.written(id, resp, body, v)
	return nil
}

// replace writes v if the stored ETag is still etag; the caller holds the
// document's turn. The raw error comes back so the caller can tell a lost
// race (412) from a failure.
func (c *collection[T]) replace(ctx context.Context, id string, etag azcore.ETag, v *T) error {
	body, err := c.encode(id, v)
	if err != nil {
		return err
	}
	resp, err := c.c.ReplaceItem(ctx, partition(id), id, body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
	if err != nil {
		if statusOf(err) != 0 {
			c.cache.drop(id)
		}
		return err
	}
	c.written(id, resp, body, v)
	return nil
}

// written remembers a successful write and tells the observer.
func (c *collection[T]) written(id string, resp azcosmos.ItemResponse, body []byte, v *T) {
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

// encode marshals v and makes sure its id is the document id, which the
// container also uses as partition key.
func (c *collection[T]) encode(id string, v *T) ([]byte, error) {
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
			return domain.Unavailable(err, "%s %s/%s: the container or database is missing (sub-status %s)", op, c.name, id, sub)
		}
		return domain.Errorf(domain.ENOTFOUND, "%s %s not found", c.name, id)
	case http.StatusConflict:
		return domain.Errorf(domain.ECONFLICT, "%s %s already exists", c.name, id)
	}
	// A 429 arrives here only after the SDK's retry policy has waited out
	// x-ms-retry-after-ms and retried (see the package doc): the message
	// queue's redelivery is the next, slower, back-off.
	return domain.Unavailable(err, "%s %s/%s", op, c.name, id)
}

// backoff waits a random moment after a lost race, growing with the
// attempt, so that writers in different processes which keep colliding
// spread out instead of colliding again in lockstep.
func (c *collection[T]) backoff(ctx context.Context, op, id string, attempt *int) error {
	if *attempt >= maxAttempts {
		return domain.Errorf(domain.EUNAVAILABLE, "%s %s/%s: lost %d races to concurrent writers", op, c.name, id, *attempt)
	}
	t := time.NewTimer(rand.N(time.Duration(*attempt) * 2 * time.Millisecond))
	defer t.Stop()
	*attempt++
	select {
	case <-ctx.Done():
		return domain.Unavailable(ctx.Err(), "%s %s/%s", op, c.name, id)
	case <-t.C:
		return nil
	}
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
