package handlers

import (
	"sync"
	"time"
)

// ttlCache remembers what a store read found, by key, for a short time, so
// a busy caller costs one read per TTL rather than one per use. Absence is
// remembered too (a nil value). It holds at most max entries: when full it
// drops the expired ones, then some live ones at random (map order), which
// costs each of their owners one read and bounds the memory. A TTL of zero
// or less turns it off. Values are copied in and out, so no caller shares
// one with another.
type ttlCache[V any] struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	m       map[string]cached[V]
	forgets uint64 // how many forgets so far: see stamp
}

type cached[V any] struct {
	v       *V // nil: the store had none
	expires time.Time
}

func newTTLCache[V any](ttl time.Duration, max int) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, max: max, m: map[string]cached[V]{}}
}

// get returns the value remembered under key and true, or false when none
// is remembered or it expired; a remembered absence is nil and true.
func (c *ttlCache[V]) get(key string, now time.Time) (*V, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	if e.v == nil {
		return nil, true
	}
	v := *e.v
	return &v, true
}

// stamp is taken before reading what put will remember. A forget between
// the two (the value changed meanwhile, and its reader may have seen it as
// it was) makes put drop the value, so that a change made through this
// process applies here at once rather than after the TTL. Any forget
// drops every put in flight: forgets are rare, a dropped put costs its
// next reader one read.
func (c *ttlCache[V]) stamp() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forgets
}

// put remembers v (nil for absent) under key from now for the TTL, unless
// a forget came after stamp.
func (c *ttlCache[V]) put(key string, v *V, now time.Time, stamp uint64) {
	if c.ttl <= 0 {
		return
	}
	if v != nil {
		cp := *v
		v = &cp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if stamp != c.forgets {
		return
	}
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cached[V]{v: v, expires: now.Add(c.ttl)}
}

// forget drops what is remembered under key, and any put in flight.
func (c *ttlCache[V]) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	c.forgets++
}
