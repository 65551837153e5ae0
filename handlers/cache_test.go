package handlers

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTTLCacheRemembersForItsTTL(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := newTTLCache[accountHook](time.Minute, 10)

	_, ok := c.get("a", at)
	assert.False(t, ok, "nothing remembered yet")
	hook := &accountHook{URL: "https://a.example/hook", Secret: "s"}
	c.put("a", hook, at, c.stamp())
	hook.URL = "changed by the caller afterwards"
	got, ok := c.get("a", at.Add(59*time.Second))
	assert.True(t, ok)
	assert.Equal(t, "https://a.example/hook", got.URL, "the cache keeps its own copy")
	got.URL = "changed by a reader"
	again, _ := c.get("a", at)
	assert.Equal(t, "https://a.example/hook", again.URL, "each reader gets its own copy")
	_, ok = c.get("a", at.Add(time.Minute))
	assert.False(t, ok, "expired")

	c.put("none", nil, at, c.stamp())
	got, ok = c.get("none", at)
	assert.True(t, ok, "an absence is remembered")
	assert.Nil(t, got)
	c.forget("none")
	_, ok = c.get("none", at)
	assert.False(t, ok, "forgotten")
}

func TestTTLCacheIsBounded(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := newTTLCache[accountHook](time.Minute, 10)
	for i := range 100 {
		c.put(fmt.Sprint(i), &accountHook{}, at, c.stamp())
		assert.LessOrEqual(t, len(c.m), 10)
	}
	_, ok := c.get("99", at)
	assert.True(t, ok, "the newest entry is kept")
}

func TestTTLCacheOffWithoutATTL(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := newTTLCache[accountHook](-1, 10)
	c.put("a", &accountHook{}, at, c.stamp())
	_, ok := c.get("a", at)
	assert.False(t, ok)
}

// A value read before a forget (the change it was forgotten for may have
// come after the read) is not remembered: the next reader reads afresh.
func TestTTLCacheDropsAPutReadBeforeAForget(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := newTTLCache[accountHook](time.Minute, 10)
	stamp := c.stamp()
	c.forget("a") // the settings changed while the read was under way
	c.put("a", &accountHook{URL: "https://old.example/hook"}, at, stamp)
	_, ok := c.get("a", at)
	assert.False(t, ok, "the value read before the change is not kept")

	c.put("a", &accountHook{URL: "https://new.example/hook"}, at, c.stamp())
	got, ok := c.get("a", at)
	assert.True(t, ok)
	assert.Equal(t, "https://new.example/hook", got.URL)
}
