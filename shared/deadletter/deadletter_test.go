package deadletter_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/deadletter"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// carrying makes the embedded bus look like one that carries
// Message.Versions (Service Bus, SQS): what it hands out carries versions,
// and what is published to it is kept for the test to read.
type carrying struct {
	ports.Bus
	published []ports.Message
}

func (b *carrying) Receive(ctx context.Context, q string, n int) ([]*ports.Delivered, error) {
	msgs, err := b.Bus.Receive(ctx, q, n)
	for _, m := range msgs {
		m.Versions = `{"deliveries/d-1":"e1"}`
	}
	return msgs, err
}

func (b *carrying) Publish(ctx context.Context, msgs ...ports.Message) error {
	b.published = append(b.published, msgs...)
	return b.Bus.Publish(ctx, msgs...)
}

// deadLettered opens an embedded bus whose queue q holds message id, with
// body, dead-lettered.
func deadLettered(t *testing.T, id, body string) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(filepath.Join(t.TempDir(), "dl.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	require.NoError(t, db.Bus().Publish(ctx, ports.Message{ID: id, Queue: "q", Body: []byte(body)}))
	got, err := db.Bus().Receive(ctx, "q", 1)
	require.NoError(t, err)
	require.NoError(t, db.Bus().DeadLetter(ctx, got[0], "test", "failed"))
	return db
}

// A replayed message's step failed before, so the replay drops the
// versions it carried: the step reads what is stored now.
func TestReplayDropsCarriedVersions(t *testing.T) {
	t.Parallel()
	db := deadLettered(t, "d-1:requested", `{}`)
	ctx := context.Background()

	bus := &carrying{Bus: db.Bus()}
	again, err := deadletter.Replay(ctx, bus, "q", "d-1:requested", 10, 300*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, bus.published, 1)
	assert.Equal(t, again, bus.published[0].ID)
	assert.Empty(t, bus.published[0].Versions)
}

// A replay gets an id of its own, within the bus's bound even when the
// message it copies already used all of it.
func TestReplayIDStaysWithinTheBusBound(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", wire.MaxMessageIDLength)
	db := deadLettered(t, long, `{}`)
	ctx := context.Background()

	again, err := deadletter.Replay(ctx, db.Bus(), "q", long, 10, 300*time.Millisecond)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(again), wire.MaxMessageIDLength)
	assert.NotEqual(t, long, again)
	replayed, err := db.Bus().Receive(ctx, "q", 1)
	require.NoError(t, err)
	require.Len(t, replayed, 1)
	assert.Equal(t, again, replayed[0].ID)
}

// A replay starts its step's count of attempts again, and the day of waits
// a throttled customer message gets, marks the body with the replay (its
// step names its retries after it), and keeps the rest of the body, fields
// this build does not know included.
func TestReplayStartsTheAttemptsAgain(t *testing.T) {
	t.Parallel()
	db := deadLettered(t, "d-2:n1:retry-7", `{"operation":"notify","deliveryId":"d-2","notificationId":"d-2:n1","attempt":7,"throttledSince":"2026-12-01T10:00:00Z","fromANewerBuild":true}`)
	ctx := context.Background()

	again, err := deadletter.Replay(ctx, db.Bus(), "q", "d-2:n1:retry-7", 10, 300*time.Millisecond)
	require.NoError(t, err)
	replayed, err := db.Bus().Receive(ctx, "q", 1)
	require.NoError(t, err)
	require.Len(t, replayed, 1)
	assert.Equal(t, again, replayed[0].ID)
	n, ok := strings.CutPrefix(again, "d-2:n1:retry-7:replay-")
	require.True(t, ok, again)
	assert.JSONEq(t, `{"operation":"notify","deliveryId":"d-2","notificationId":"d-2:n1","fromANewerBuild":true,"replay":"`+n+`"}`, string(replayed[0].Body))
}

// A replay that is dead-lettered and replayed again is named after the
// original message, so ids do not grow with each replay.
func TestReplayOfAReplayIsNamedAfterTheOriginal(t *testing.T) {
	t.Parallel()
	db := deadLettered(t, "d-1:requested:replay-17", `{}`)
	ctx := context.Background()

	again, err := deadletter.Replay(ctx, db.Bus(), "q", "d-1:requested:replay-17", 10, 300*time.Millisecond)
	require.NoError(t, err)
	n, ok := strings.CutPrefix(again, "d-1:requested:replay-")
	require.True(t, ok, again)
	assert.Empty(t, strings.Trim(n, "0123456789"), again)
	assert.NotEqual(t, "17", n)
}

// On a bus that can take one message by its id (the embedded one),
// replaying a dead letter receives that message alone: the others'
// delivery counts stay as they were, whether the replay finds its message
// or not.
func TestReplayLeavesTheOtherDeadLettersAlone(t *testing.T) {
	t.Parallel()
	db := deadLettered(t, "a", `{}`)
	ctx := context.Background()
	require.NoError(t, db.Bus().Publish(ctx, ports.Message{ID: "b", Queue: "q", Body: []byte(`{}`)}))
	got, err := db.Bus().Receive(ctx, "q", 1)
	require.NoError(t, err)
	require.NoError(t, db.Bus().DeadLetter(ctx, got[0], "test", "failed"))
	counts := func() map[string]int {
		msgs, err := db.Bus().Browse(ctx, ports.DeadLetterQueue("q"), 10)
		require.NoError(t, err)
		out := map[string]int{}
		for _, m := range msgs {
			out[m.ID] = m.DeliveryCount
		}
		return out
	}
	before := counts()
	require.Equal(t, map[string]int{"a": 1, "b": 1}, before)

	_, err = deadletter.Replay(ctx, db.Bus(), "q", "nope", 10, 300*time.Millisecond)
	assert.True(t, domain.IsCode(err, domain.ENOTFOUND), "%v", err)
	assert.Equal(t, before, counts(), "a replay that finds nothing counts nothing")

	_, err = deadletter.Replay(ctx, db.Bus(), "q", "a", 10, 300*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"b": 1}, counts(), "a is replayed, b is untouched")
}
