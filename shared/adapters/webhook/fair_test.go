package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// endpoints is a ports.Webhooks double: each account's endpoint answers
// with its err, after waiting on its gate when it has one.
type endpoints struct {
	mu      sync.Mutex
	err     map[string]error
	gate    map[string]chan struct{}
	calls   map[string]int
	waiting atomic.Int32
}

func newEndpoints() *endpoints {
	return &endpoints{err: map[string]error{}, gate: map[string]chan struct{}{}, calls: map[string]int{}}
}

func (e *endpoints) Post(ctx context.Context, w ports.Webhook) error {
	e.mu.Lock()
	e.calls[w.AccountID]++
	gate, err := e.gate[w.AccountID], e.err[w.AccountID]
	e.mu.Unlock()
	if gate != nil {
		e.waiting.Add(1)
		<-gate
	}
	return err
}

// hold makes the account's endpoint wait on a new gate, which it returns.
func (e *endpoints) hold(account string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	gate := make(chan struct{})
	e.gate[account] = gate
	return gate
}

// ungate lets the account's endpoint answer at once again.
func (e *endpoints) ungate(account string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.gate, account)
}

func (e *endpoints) set(account string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.err[account] = err
}

func (e *endpoints) callsOf(account string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[account]
}

func post(f *webhook.Fair, account string) error {
	return f.Post(context.Background(), ports.Webhook{AccountID: account, URL: "https://" + account + ".example/h"})
}

func TestFairBoundsEachAccountsWebhooksInFlight(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	e.gate["slow"] = make(chan struct{})
	f := webhook.NewFair(e, webhook.FairOptions{PerAccount: 2, BusyRetry: time.Second, Log: slog.New(slog.DiscardHandler)})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { assert.NoError(t, post(f, "slow")) })
	}
	require.Eventually(t, func() bool { return e.waiting.Load() == 2 }, time.Minute, time.Millisecond)

	err := post(f, "slow")
	var held *ports.WebhookHeld
	require.True(t, errors.As(err, &held), "%v", err)
	assert.True(t, held.Busy, "the third of the account's webhooks waits its turn")
	assert.GreaterOrEqual(t, held.RetryAfter, time.Second)
	assert.LessOrEqual(t, held.RetryAfter, 2*time.Second)
	assert.Equal(t, 2, e.callsOf("slow"), "it never reached the endpoint")
	for i := range 5 {
		assert.NoError(t, post(f, fmt.Sprintf("other-%d", i)), "other accounts are served meanwhile")
	}

	close(e.gate["slow"])
	wg.Wait()
	assert.NoError(t, post(f, "slow"), "a slot came free")
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// An account whose endpoint answers slowly gets one webhook in flight, so
// that a few such accounts, each within its own bound, cannot hold every
// worker between them: slow once a webhook in flight has taken longer
// than SlowAfter, or one did within SlowMemory, and back to its full share
// once SlowMemory has passed without a slow answer.
func TestFairGivesASlowEndpointOneWebhookInFlight(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	clock := &fakeClock{now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	f := webhook.NewFair(e, webhook.FairOptions{PerAccount: 4, SlowAfter: time.Second, BusyRetry: time.Second, Now: clock.Now, Log: slog.New(slog.DiscardHandler)})
	busy := func(err error) bool {
		var held *ports.WebhookHeld
		return errors.As(err, &held) && held.Busy
	}
	gate := e.hold("slow")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { assert.NoError(t, post(f, "slow")) })
	}
	require.Eventually(t, func() bool { return e.waiting.Load() == 2 }, time.Minute, time.Millisecond)
	clock.advance(1500 * time.Millisecond)
	assert.True(t, busy(post(f, "slow")), "in flight for longer than SlowAfter: no third")
	assert.NoError(t, post(f, "prompt"), "other accounts are served")

	close(gate)
	wg.Wait()
	gate = e.hold("slow")
	wg.Go(func() { assert.NoError(t, post(f, "slow")) })
	require.Eventually(t, func() bool { return e.waiting.Load() == 3 }, time.Minute, time.Millisecond)
	assert.True(t, busy(post(f, "slow")), "its last webhook was slow: one in flight")
	close(gate)
	wg.Wait()

	// Answered promptly (the clock did not move), but within SlowMemory of
	// its slow answers: still one, so that a prompt answer now and then
	// does not buy back the full share to hold with slow ones.
	gate = e.hold("slow")
	wg.Go(func() { assert.NoError(t, post(f, "slow")) })
	require.Eventually(t, func() bool { return e.waiting.Load() == 4 }, time.Minute, time.Millisecond)
	assert.True(t, busy(post(f, "slow")), "slow a minute after its last slow answer")
	close(gate)
	wg.Wait()

	// A minute on, with no slow answer since: the full share again.
	clock.advance(webhook.DefaultSlowMemory + time.Second)
	gate = e.hold("slow")
	for range 4 {
		wg.Go(func() { assert.NoError(t, post(f, "slow")) })
	}
	require.Eventually(t, func() bool { return e.waiting.Load() == 8 }, time.Minute, time.Millisecond)
	close(gate)
	wg.Wait()
}

// Many accounts, each with one webhook in flight to a slow endpoint,
// share SlowTotal slots between them: the rest of the workers stay with
// prompt endpoints. An endpoint not yet known slow is let through, and
// counts among the slow once its webhook has taken longer than SlowAfter.
func TestFairBoundsTheSlowEndpointsTogether(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	clock := &fakeClock{now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	f := webhook.NewFair(e, webhook.FairOptions{PerAccount: 4, SlowAfter: time.Second, SlowTotal: 2, BusyRetry: time.Second,
		Now: clock.Now, Log: slog.New(slog.DiscardHandler)})
	busy := func(err error) bool {
		var held *ports.WebhookHeld
		return errors.As(err, &held) && held.Busy
	}
	// send posts one of the account's webhooks in the background; the
	// channel closes when Post has returned.
	send := func(account string) chan struct{} {
		done := make(chan struct{})
		go func() { defer close(done); assert.NoError(t, post(f, account)) }()
		return done
	}
	gates, done := map[string]chan struct{}{}, map[string]chan struct{}{}
	for _, a := range []string{"slow-1", "slow-2", "slow-3"} {
		gates[a] = e.hold(a)
		done[a] = send(a)
	}
	require.Eventually(t, func() bool { return e.waiting.Load() == 3 }, time.Minute, time.Millisecond)
	clock.advance(1500 * time.Millisecond)

	// The three are slow now. When one ends, the two others fill the slow
	// endpoints' share, and it waits though it has none in flight.
	close(gates["slow-1"])
	<-done["slow-1"]
	e.ungate("slow-1") // a webhook let through would come back at once
	assert.True(t, busy(post(f, "slow-1")), "two slow endpoints' webhooks are in flight already")
	assert.Equal(t, 1, e.callsOf("slow-1"), "it never reached its endpoint")
	for i := range 5 {
		assert.NoError(t, post(f, fmt.Sprintf("prompt-%d", i)), "prompt endpoints are served meanwhile")
	}

	close(gates["slow-2"])
	<-done["slow-2"]
	gates["slow-1"] = e.hold("slow-1")
	done["slow-1"] = send("slow-1")
	require.Eventually(t, func() bool { return e.waiting.Load() == 4 }, time.Minute, time.Millisecond, "a slow slot came free")
	assert.Equal(t, 2, e.callsOf("slow-1"))
	close(gates["slow-1"])
	close(gates["slow-3"])
	<-done["slow-1"]
	<-done["slow-3"]
}

func TestFairOpensAnAccountsCircuitAndHalfOpensAfterTheCoolDown(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	e.set("dead", errors.New("webhook answered 503"))
	f := webhook.NewFair(e, webhook.FairOptions{FailuresToOpen: 3, CoolDown: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	for range 3 {
		err := post(f, "dead")
		require.Error(t, err)
		var held *ports.WebhookHeld
		assert.False(t, errors.As(err, &held), "the endpoint's own answer: %v", err)
	}
	require.Equal(t, 3, e.callsOf("dead"))

	// Open: fail fast, without reaching the endpoint.
	err := post(f, "dead")
	var held *ports.WebhookHeld
	require.True(t, errors.As(err, &held), "%v", err)
	assert.False(t, held.Busy, "an open circuit counts as a failed attempt")
	assert.Equal(t, 50*time.Millisecond, held.RetryAfter, "tried again after the cool-down")
	assert.Equal(t, "webhook answered 503", held.LastFailure, "what opened the circuit")
	assert.Contains(t, held.Error(), "its last failure: webhook answered 503")
	assert.Equal(t, 3, e.callsOf("dead"))
	assert.NoError(t, post(f, "alive"), "another account's circuit is its own")

	// The endpoint recovers; after the cool-down one trial goes through
	// and closes the circuit.
	e.set("dead", nil)
	require.Eventually(t, func() bool { return post(f, "dead") == nil }, time.Minute, 5*time.Millisecond)
	assert.Equal(t, 4, e.callsOf("dead"), "one trial reached the endpoint")
	for range 5 {
		assert.NoError(t, post(f, "dead"))
	}
	assert.Equal(t, 9, e.callsOf("dead"), "closed again")
}

func TestFairTripsOnlyOnTheEndpointsFailures(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	f := webhook.NewFair(e, webhook.FairOptions{FailuresToOpen: 2, CoolDown: time.Hour, Log: slog.New(slog.DiscardHandler)})
	e.set("a", fmt.Errorf("webhook to http://127.0.0.1: %w", ports.ErrWebhookRefused))
	for range 5 {
		assert.ErrorIs(t, post(f, "a"), ports.ErrWebhookRefused)
	}
	e.set("a", context.Canceled)
	for range 5 {
		assert.ErrorIs(t, post(f, "a"), context.Canceled)
	}
	assert.Equal(t, 10, e.callsOf("a"), "refusals and cancellations leave the circuit closed")
	e.set("a", errors.New("boom"))
	post(f, "a")
	e.set("a", nil)
	require.NoError(t, post(f, "a"), "a success resets the count of consecutive failures")
	e.set("a", errors.New("boom"))
	post(f, "a")
	assert.Equal(t, 13, e.callsOf("a"))
}

// A circuit judges one endpoint: an account that moves its webhook to
// another URL is sent to at once, not after the old one's cool-down.
func TestFairStartsANewCircuitForANewURL(t *testing.T) {
	t.Parallel()
	e := newEndpoints()
	e.set("moved", errors.New("webhook answered 503"))
	f := webhook.NewFair(e, webhook.FairOptions{FailuresToOpen: 2, CoolDown: time.Hour, Log: slog.New(slog.DiscardHandler)})
	for range 2 {
		require.Error(t, post(f, "moved"))
	}
	var held *ports.WebhookHeld
	require.True(t, errors.As(post(f, "moved"), &held), "open for the old URL")
	require.Equal(t, 2, e.callsOf("moved"))

	e.set("moved", nil)
	err := f.Post(context.Background(), ports.Webhook{AccountID: "moved", URL: "https://new.moved.example/h"})
	require.NoError(t, err, "the new URL has a closed circuit of its own")
	assert.Equal(t, 3, e.callsOf("moved"))
}
