package porttest

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

// FaultyBus wraps a bus with the faults real brokers show, for tests that
// prove the steps do not care: every message delivered twice (a second copy
// under another id, so duplicate detection cannot drop it), and messages
// delivered out of order (each held back by a random delay).
type FaultyBus struct {
	ports.Bus
	// Duplicate sends every message twice.
	Duplicate bool
	// Reorder is the longest random delay added to a message; zero keeps order.
	Reorder time.Duration

	mu         sync.Mutex
	rng        *rand.Rand
	Duplicates atomic.Int64 // copies injected
	Delayed    atomic.Int64 // messages held back
}

// NewFaultyBus wraps inner; seed makes the delays repeatable.
func NewFaultyBus(inner ports.Bus, duplicate bool, reorder time.Duration, seed uint64) *FaultyBus {
	return &FaultyBus{Bus: inner, Duplicate: duplicate, Reorder: reorder, rng: rand.New(rand.NewPCG(seed, seed+1))}
}

// Publish implements ports.Publisher with the faults applied.
func (b *FaultyBus) Publish(ctx context.Context, msgs ...ports.Message) error {
	out := make([]ports.Message, 0, 2*len(msgs))
	for _, m := range msgs {
		out = append(out, b.delay(m))
		if b.Duplicate {
			dup := m
			dup.ID = m.ID + "#dup"
			out = append(out, b.delay(dup))
			b.Duplicates.Add(1)
		}
	}
	return b.Bus.Publish(ctx, out...)
}

func (b *FaultyBus) delay(m ports.Message) ports.Message {
	if b.Reorder <= 0 {
		return m
	}
	b.mu.Lock()
	d := time.Duration(b.rng.Int64N(int64(b.Reorder)))
	b.mu.Unlock()
	base := time.Now()
	if m.NotBefore.After(base) {
		base = m.NotBefore
	}
	m.NotBefore = base.Add(d)
	b.Delayed.Add(1)
	return m
}
