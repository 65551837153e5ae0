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
// embedded backend, two steps that read a delivery another writer changes
// while they run (the preemption step rewriting a delivery whose notice is
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
			ctx := context.Background()
			db, err := embedded.Open(filepath.Join(t.TempDir(), "outside.db"), embedded.Options{PollInterval: 20 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { db.Close() })
			// Written through a unit of work, as the chain writes it, so
			// that a step's read of it comes from the process's cache.
			uow := db.Begin()
			require.NoError(t, uow.Store().Deliveries.Create(ctx, "d1", &domain.Delivery{ID: "d1", OwnerID: "o1", Stage: domain.StageCreated}))
			require.NoError(t, uow.Commit(ctx, nil))

			var runs atomic.Int32
			step := func(ctx context.Context, msg *ports.Delivered) ([]ports.Message, error) {
				if _, err := ports.StoreFrom(ctx, db.Store()).Deliveries.Find(ctx, "d1"); err != nil {
					return nil, err
				}
				if runs.Add(1) == 1 {
					// Another step changes the delivery meanwhile.
					_, err := db.Store().Deliveries.Update(ctx, "d1", func(d *domain.Delivery) error {
						d.Stage = domain.StageRescheduled
						return nil
					})
					require.NoError(t, err)
				}
				return nil, nil
			}
			reg := functionapp.Registry{"Notice": {Queue: step, ActsOutside: tc.outside}}
			fns := []functionapp.FunctionConfig{{Name: "Notice", Bindings: []functionapp.Binding{
				{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "notices", Connection: "ServiceBusConnection"}}}}
			srv, err := standalone.New(reg, fns, db.Bus(), slog.New(slog.DiscardHandler), standalone.Options{Workers: 1})
			require.NoError(t, err)
			standalonetest.Serve(t, srv)
			require.NoError(t, db.Bus().Publish(ctx, ports.Message{ID: "d1:n1", Queue: "notices", Body: []byte(`{}`)}))

			require.Eventually(t, func() bool {
				active, dead, err := db.Bus().Depth(ctx, "notices")
				return err == nil && active == 0 && dead == 0 && runs.Load() > 0
			}, time.Minute, 10*time.Millisecond, "the message is completed")
			assert.Equal(t, tc.runs, runs.Load())
		})
	}
}
