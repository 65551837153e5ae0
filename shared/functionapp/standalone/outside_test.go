package standalone_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone/standalonetest"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// TestAStepThatActsOutsideIsNotRunAgainForAChangedRead runs, on the
// embedded backend, a step that reads a delivery another writer changes
// while it runs (the preemption step rewriting a delivery whose notice is
// being posted): a step that acts outside the store (a webhook) runs once,
// where running it again would post the notice twice; any other step runs
// again on the fresh document, as before.
func TestAStepThatActsOutsideIsNotRunAgainForAChangedRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		outside bool
		runs    int32
	}{
		{"acts outside", true, 1},
		{"writes only", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, _ := openWithDelivery(t)
			var runs atomic.Int32
			serveStep(t, db, tc.outside, func(ctx context.Context, d *domain.Delivery) error {
				if runs.Add(1) == 1 {
					// Another step changes the delivery meanwhile.
					_, err := db.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error {
						d.Stage = domain.StageRescheduled
						return nil
					})
					require.NoError(t, err)
				}
				return nil
			})
			waitSettled(t, db, &runs)
			assert.Equal(t, tc.runs, runs.Load())
		})
	}
}

// TestAStepThatActsOutsideReadsWhatIsStored: the delivery was changed by
// another process on the same file, so this process's cache of recent
// documents holds an older copy; a step that acts outside the store reads
// the stored one at once (a notice the older copy lacks would be refused
// as never made, or a subscription it lacks left unsent).
func TestAStepThatActsOutsideReadsWhatIsStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := openWithDelivery(t)
	other, err := embedded.Open(path, embedded.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	_, err = other.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error {
		d.Stage = domain.StageRescheduled
		return nil
	})
	require.NoError(t, err)

	var runs atomic.Int32
	var seen atomic.Value
	serveStep(t, db, true, func(_ context.Context, d *domain.Delivery) error {
		runs.Add(1)
		seen.Store(d.Stage)
		return nil
	})
	waitSettled(t, db, &runs)
	assert.Equal(t, int32(1), runs.Load())
	assert.Equal(t, domain.StageRescheduled, seen.Load(), "the stored copy, not the cached one")
}

// openWithDelivery opens an embedded backend holding delivery d1, written
// through a unit of work as the chain writes it, so that this process's
// cache of recent documents holds it.
func openWithDelivery(t *testing.T) (*embedded.DB, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outside.db")
	db, err := embedded.Open(path, embedded.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	uow := db.Begin()
	require.NoError(t, uow.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", OwnerID: "o1", Stage: domain.StageCreated}))
	require.NoError(t, uow.Commit(ctx, nil))
	return db, path
}

// serveStep serves, on db, a queue function "Notice" that reads delivery
// d1 as a step does and hands it to act, and sends it one message.
func serveStep(t *testing.T, db *embedded.DB, outside bool, act func(context.Context, *domain.Delivery) error) {
	t.Helper()
	step := func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
		d, err := ports.StoreFrom(ctx, db.Store()).Deliveries.Find(ctx, "d1")
		if err != nil {
			return nil, err
		}
		return nil, act(ctx, d)
	}
	reg := functionapp.Registry{"Notice": {Queue: step, ActsOutside: outside}}
	fns := []functionapp.FunctionConfig{{Name: "Notice", Bindings: []functionapp.Binding{
		{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "notices", Connection: "ServiceBusConnection"}}}}
	srv, err := standalone.New(reg, fns, db.Bus(), slog.New(slog.DiscardHandler), standalone.Options{Workers: 1})
	require.NoError(t, err)
	standalonetest.Serve(t, srv)
	require.NoError(t, db.Bus().Publish(context.Background(), ports.Message{ID: "d1:n1", Queue: "notices", Body: []byte(`{}`)}))
}

// waitSettled waits until the step has run and the message serveStep sent
// is completed.
func waitSettled(t *testing.T, db *embedded.DB, runs *atomic.Int32) {
	t.Helper()
	require.Eventually(t, func() bool {
		active, dead, err := db.Bus().Depth(context.Background(), "notices")
		return err == nil && active == 0 && dead == 0 && runs.Load() > 0
	}, time.Minute, 10*time.Millisecond, "the message is completed")
}
