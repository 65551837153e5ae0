package webhook

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Defaults of FairOptions.
const (
	DefaultPerAccount     = 4
	DefaultFailuresToOpen = 5
	DefaultCoolDown       = 30 * time.Second
	DefaultSlowAfter      = time.Second
	DefaultSlowMemory     = time.Minute
	// DefaultSlowTotal is half the 16 workers a notifications queue has at
	// the least: host.json's serviceBus.maxConcurrentCalls under the
	// Functions host, and the standalone runtime's default.
	DefaultSlowTotal = 8
)

// maxBreakers bounds the accounts whose circuits one process remembers;
// past it, closed circuits without failures are forgotten, with what was
// noted of their endpoints (slow ones are found slow again).
const maxBreakers = 10000

// FairOptions configure Fair. Each bound holds per process: under the
// Functions host or on Lambda, per instance.
type FairOptions struct {
	// PerAccount is how many webhooks one account may have in flight at
	// once; zero means DefaultPerAccount. The rest of the workers serve
	// other accounts.
	PerAccount int
	// FailuresToOpen is how many consecutive failures open an account's
	// circuit; zero means DefaultFailuresToOpen.
	FailuresToOpen int
	// CoolDown is how long an open circuit fails fast before it lets one
	// trial through (half-open); zero means DefaultCoolDown.
	CoolDown time.Duration
	// BusyRetry is how long a webhook held back by PerAccount waits before
	// it is offered again (plus up to as much again at random, so held
	// ones do not return together); zero means DefaultTimeout, one
	// attempt's bound, by which time a slot has most likely come free.
	BusyRetry time.Duration
	// SlowAfter marks an account's endpoint slow: a webhook took longer
	// within SlowMemory, or one in flight has taken longer already. A slow endpoint
	// gets one webhook in flight, not PerAccount, so that a few accounts
	// with endpoints that answer slowly, each within its own bound, cannot
	// hold every worker between them; zero means DefaultSlowAfter.
	SlowAfter time.Duration
	// SlowMemory is how long an endpoint stays slow after a slow answer,
	// prompt answers notwithstanding, so that one that answers one
	// webhook promptly cannot take its full share again at once to hold
	// with slow ones; zero means DefaultSlowMemory.
	SlowMemory time.Duration
	// SlowTotal is how many webhooks to slow endpoints, of all accounts
	// together, may be in flight at once, so that many accounts, each
	// with one slow webhook in flight, cannot hold every worker between
	// them either; zero means DefaultSlowTotal. Keep it below the
	// notifications queue's workers.
	SlowTotal int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Fair wraps a ports.Webhooks so that one account's slow or dead endpoint
// delays only that account: at most PerAccount of its webhooks are in
// flight at once (one while its endpoint is slow, and SlowTotal of all
// slow endpoints' together), and after FailuresToOpen consecutive failures its
// circuit opens and its webhooks fail fast, without a connection, until a
// trial after CoolDown succeeds. A webhook held back either way returns a
// *ports.WebhookHeld, and the caller schedules it again: nothing is
// dropped.
type Fair struct {
	next ports.Webhooks
	o    FairOptions

	mu       sync.Mutex
	started  map[string][]time.Time // when each of an account's webhooks in flight began, oldest first
	slow     map[string]time.Time   // until when each account's endpoint counts as slow: SlowMemory after its last slow answer
	breakers map[string]*gobreaker.CircuitBreaker[struct{}]
	urls     map[string]string // the endpoint each account's circuit judges
	lastErr  map[string]string // the last failure of each account's endpoint, while its circuit is not closed and clean
}

// NewFair wraps next.
func NewFair(next ports.Webhooks, o FairOptions) *Fair {
	o.PerAccount = orDefault(o.PerAccount, DefaultPerAccount)
	o.FailuresToOpen = orDefault(o.FailuresToOpen, DefaultFailuresToOpen)
	o.CoolDown = orDefault(o.CoolDown, DefaultCoolDown)
	o.BusyRetry = orDefault(o.BusyRetry, DefaultTimeout)
	o.SlowAfter = orDefault(o.SlowAfter, DefaultSlowAfter)
	o.SlowMemory = orDefault(o.SlowMemory, DefaultSlowMemory)
	o.SlowTotal = orDefault(o.SlowTotal, DefaultSlowTotal)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Fair{next: next, o: o, started: map[string][]time.Time{}, slow: map[string]time.Time{},
		breakers: map[string]*gobreaker.CircuitBreaker[struct{}]{}, urls: map[string]string{}, lastErr: map[string]string{}}
}

// orDefault is v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Post sends w unless its account has its share in flight or its circuit
// is open.
func (f *Fair) Post(ctx context.Context, w ports.Webhook) error {
	cb, start, ok := f.acquire(w.AccountID, w.URL)
	if !ok {
		return &ports.WebhookHeld{Busy: true, RetryAfter: f.o.BusyRetry + rand.N(f.o.BusyRetry+1)}
	}
	defer f.release(w.AccountID, start)
	_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, f.next.Post(ctx, w) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		// Held back, the webhook says why its endpoint's circuit opened:
		// the failure that an operator reading a dead letter needs.
		return &ports.WebhookHeld{RetryAfter: f.o.CoolDown, LastFailure: f.lastFailure(w.AccountID)}
	}
	f.noteOutcome(w.AccountID, err)
	return err
}

func (f *Fair) noteOutcome(account string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		delete(f.lastErr, account)
	case !errors.Is(err, ports.ErrWebhookRefused) && !errors.Is(err, context.Canceled):
		f.lastErr[account] = err.Error()
	}
}

func (f *Fair) lastFailure(account string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr[account]
}

// acquire takes one of the account's slots and returns its circuit for
// url and when the slot was taken, or reports that every slot is taken
// (one, while its endpoint is slow, and none while the slow endpoints have
// SlowTotal in flight between them). A circuit judges one endpoint: an
// account that moved its webhook to another url (PUT …/webhook) starts
// with a closed one rather than wait out the old endpoint's cool-down.
func (f *Fair) acquire(account, url string) (*gobreaker.CircuitBreaker[struct{}], time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.o.Now()
	limit := f.o.PerAccount
	inFlight := f.started[account]
	slow := now.Before(f.slow[account]) || len(inFlight) > 0 && now.Sub(inFlight[0]) > f.o.SlowAfter
	if slow {
		limit = 1
	}
	if len(inFlight) >= limit || slow && f.slowInFlight(now) >= f.o.SlowTotal {
		return nil, time.Time{}, false
	}
	f.started[account] = append(inFlight, now)
	cb := f.breakers[account]
	if cb != nil && f.urls[account] != url {
		cb = nil
	}
	if cb == nil {
		if len(f.breakers) >= maxBreakers {
			for k, b := range f.breakers {
				if b.State() == gobreaker.StateClosed && b.Counts().ConsecutiveFailures == 0 && len(f.started[k]) == 0 {
					delete(f.breakers, k)
					delete(f.urls, k)
					delete(f.lastErr, k)
					delete(f.slow, k)
				}
			}
		}
		cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        account,
			MaxRequests: 1,
			Timeout:     f.o.CoolDown,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(f.o.FailuresToOpen) },
			// A refused address says nothing of the endpoint's health, and
			// a cancelled context (shutdown) nothing at all.
			IsExcluded: func(err error) bool {
				return errors.Is(err, ports.ErrWebhookRefused) || errors.Is(err, context.Canceled)
			},
			OnStateChange: func(account string, from, to gobreaker.State) {
				f.o.Log.Warn("webhook circuit "+to.String(), "accountId", account, "from", from.String())
			},
		})
		f.breakers[account], f.urls[account] = cb, url
	}
	return cb, now, true
}

// slowInFlight counts the webhooks in flight to slow endpoints: every one
// of an account marked slow (within SlowMemory of a slow answer), and each other one that has
// taken longer than SlowAfter already. f.mu is held.
func (f *Fair) slowInFlight(now time.Time) int {
	n := 0
	for account, starts := range f.started {
		if now.Before(f.slow[account]) {
			n += len(starts)
			continue
		}
		for _, s := range starts {
			if now.Sub(s) > f.o.SlowAfter {
				n++
			}
		}
	}
	return n
}

// release gives back the slot taken at start, and judges the endpoint by
// how long the webhook took.
func (f *Fair) release(account string, start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	starts := f.started[account]
	if i := slices.Index(starts, start); i >= 0 {
		starts = slices.Delete(starts, i, i+1)
	}
	if len(starts) == 0 {
		delete(f.started, account)
	} else {
		f.started[account] = starts
	}
	if now := f.o.Now(); now.Sub(start) > f.o.SlowAfter {
		f.slow[account] = now.Add(f.o.SlowMemory)
	} else if !now.Before(f.slow[account]) {
		delete(f.slow, account)
	}
}

// NewSender is the webhook sender a service runs with: the HTTP client o
// describes, behind the per-account fairness fair describes. A webhook
// held back for its account's share waits one attempt's timeout (o's)
// unless fair says otherwise.
func NewSender(o Options, fair FairOptions) *Fair {
	if fair.BusyRetry <= 0 {
		fair.BusyRetry = o.Timeout
	}
	return NewFair(New(o), fair)
}
