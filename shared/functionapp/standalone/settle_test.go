package standalone_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone/standalonetest"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// recordingBus delivers one message and records how it was settled.
type recordingBus struct {
	mu        sync.Mutex
	msg       *ports.Delivered
	published []ports.Message
	calls     []string
	with      []ports.Message // what a unit of work committed
	withErr   error
	stale     []error // what the next commits answer, before withErr
	checks    []error // what the next CheckReads answer
	failing   []error // what the next completions answer
	settled   chan struct{}
}

func (b *recordingBus) Receive(ctx context.Context, queue string, max int) ([]*ports.Delivered, error) {
	b.mu.Lock()
	m := b.msg
	b.msg = nil
	b.mu.Unlock()
	if m != nil {
		return []*ports.Delivered{m}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (b *recordingBus) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
	if call != "publish" {
		close(b.settled)
	}
}

func (b *recordingBus) Publish(_ context.Context, msgs ...ports.Message) error {
	b.mu.Lock()
	b.published = append(b.published, msgs...)
	b.mu.Unlock()
	b.record("publish")
	return nil
}
func (b *recordingBus) Complete(context.Context, *ports.Delivered) error {
	b.mu.Lock()
	if n := len(b.failing); n > 0 {
		err := b.failing[0]
		b.failing = b.failing[1:]
		b.mu.Unlock()
		return err
	}
	b.mu.Unlock()
	b.record("complete")
	return nil
}
func (b *recordingBus) Abandon(context.Context, *ports.Delivered) error {
	b.record("abandon")
	return nil
}
func (b *recordingBus) DeadLetter(context.Context, *ports.Delivered, string, string) error {
	b.record("dead-letter")
	return nil
}

// withBus adds the units of work the embedded backend offers: the step's
// writes, its outputs and the completion commit together.
type withBus struct{ *recordingBus }

func (b withBus) Begin() ports.UnitOfWork { return withWork(b) }

type withWork withBus

func (withWork) Store() ports.Store { return ports.Store{} }

func (w withWork) Commit(_ context.Context, _ *ports.Delivered, out ...ports.Message) error {
	w.mu.Lock()
	err := w.withErr
	if n := len(w.stale); n > 0 {
		err, w.stale = w.stale[0], w.stale[1:]
	}
	if err == nil {
		w.with = append(w.with, out...)
	}
	w.mu.Unlock()
	if err == nil {
		w.record("complete-with")
	}
	return err
}

// CheckReads implements ports.ReadChecker.
func (w withWork) CheckReads(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.checks) == 0 {
		return nil
	}
	err := w.checks[0]
	w.checks = w.checks[1:]
	return err
}

// runStep runs one queue function over bus until the message is settled.
func runStep(t *testing.T, bus ports.Bus, rb *recordingBus) {
	t.Helper()
	out := ports.Message{ID: "d1:next", Queue: "next", Body: []byte(`{}`)}
	runStepWith(t, bus, rb, func(context.Context, *ports.Delivered) ([]ports.Message, error) {
		return []ports.Message{out}, nil
	})
}

// runStepWith runs step over bus until the message is settled.
func runStepWith(t *testing.T, bus ports.Bus, rb *recordingBus, step functionapp.QueueFunc) {
	t.Helper()
	runStepLogged(t, bus, rb, step, slog.New(slog.DiscardHandler))
}

func runStepLogged(t *testing.T, bus ports.Bus, rb *recordingBus, step functionapp.QueueFunc, log *slog.Logger) {
	t.Helper()
	reg := functionapp.Registry{"Step": {Queue: step}}
	fns := []functionapp.FunctionConfig{{Name: "Step", Bindings: []functionapp.Binding{
		{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "q", Connection: "ServiceBusConnection"}}}}
	srv, err := standalone.New(reg, fns, bus, log, standalone.Options{Workers: 1})
	require.NoError(t, err)
	_, stop := standalonetest.Serve(t, srv)
	select {
	case <-rb.settled:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was never settled")
	}
	require.NoError(t, stop())
}

func newRecordingBus() *recordingBus {
	return &recordingBus{msg: &ports.Delivered{Message: ports.Message{ID: "d1:step", Queue: "q"}, LockToken: "t", DeliveryCount: 1},
		settled: make(chan struct{})}
}

func TestOutputsGoOutWithTheCompletionWhenTheBusCan(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	runStep(t, withBus{rb}, rb)
	assert.Equal(t, []string{"complete-with"}, rb.calls, "one settlement carries the outputs")
	require.Len(t, rb.with, 1)
	assert.Equal(t, "d1:next", rb.with[0].ID)
	assert.Empty(t, rb.published)
}

func TestOutputsArePublishedBeforeTheCompletionOtherwise(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	runStep(t, rb, rb)
	assert.Equal(t, []string{"publish", "complete"}, rb.calls)
	require.Len(t, rb.published, 1)
	assert.Equal(t, "d1:next", rb.published[0].ID)
}

// checkCopy asserts that m is the first scheduled copy of d1:step.
func checkCopy(t *testing.T, m ports.Message, before time.Time) {
	t.Helper()
	base, n := wire.Redelivery(m.ID)
	assert.Equal(t, "d1:step", base)
	assert.Equal(t, 1, n, "the first copy")
	assert.True(t, m.NotBefore.After(before), "the copy is scheduled for later")
}

// copiedAtCommit runs the step in a unit of work whose commits fail with
// stale, one error each, and checks that the message's copy for later and
// its completion commit together, carrying none of the runs' outputs.
func copiedAtCommit(t *testing.T, stale []error) {
	t.Helper()
	rb := newRecordingBus()
	rb.stale = stale
	before := time.Now()
	runStep(t, withBus{rb}, rb)
	assert.Equal(t, []string{"complete-with"}, rb.calls, "the copy and the completion commit together; no abandon burns a delivery")
	require.Len(t, rb.with, 1, "none of the runs' outputs went out")
	checkCopy(t, rb.with[0], before)
}

func TestAFailedCommitSchedulesACopyInsteadOfAbandoning(t *testing.T) {
	t.Parallel()
	copiedAtCommit(t, []error{domain.Unavailable(nil, "store down")})
}

func TestAFailedStepSchedulesACopyBeforeTheCompletion(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	before := time.Now()
	runStepWith(t, rb, rb, func(context.Context, *ports.Delivered) ([]ports.Message, error) {
		return nil, domain.Unavailable(nil, "Cosmos DB throttled")
	})
	assert.Equal(t, []string{"publish", "complete"}, rb.calls)
	require.Len(t, rb.published, 1)
	checkCopy(t, rb.published[0], before)
}

func TestAMessageWhoseCopiesAreUsedUpIsAbandoned(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	rb.msg.ID = wire.RedeliveryID("d1:step", standalone.DefaultRetry.Attempts)
	var told int
	runStepWith(t, rb, rb, func(_ context.Context, m *ports.Delivered) ([]ports.Message, error) {
		told = m.DeliveryCount
		return nil, domain.Unavailable(nil, "still down")
	})
	assert.Equal(t, []string{"abandon"}, rb.calls, "left to the queue's maxDeliveryCount")
	assert.Equal(t, 1+standalone.DefaultRetry.Attempts, told, "the step is told the copies before it as deliveries")
}

func TestAFailureOtherThanUnavailabilityIsAbandonedAtOnce(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	runStepWith(t, rb, rb, func(context.Context, *ports.Delivered) ([]ports.Message, error) {
		return nil, errors.New("delivery d1 not found yet")
	})
	assert.Equal(t, []string{"abandon"}, rb.calls, "waiting would not help; the dead-letter queue shows a failure that repeats")
}

func TestASettlementTheBusRefusesIsTriedAgain(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	rb.failing = []error{domain.Unavailable(nil, "link detached"), domain.Unavailable(nil, "link refused")}
	runStep(t, rb, rb)
	assert.Equal(t, []string{"publish", "complete"}, rb.calls, "completed once the bus answered")
	assert.Empty(t, rb.failing)
}

func TestAStepThatLostARaceRunsAgain(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	rb.stale = []error{ports.ErrStale, ports.ErrStale}
	runStep(t, withBus{rb}, rb)
	assert.Equal(t, []string{"complete-with"}, rb.calls, "the third run commits; nothing was settled before it")
	require.Len(t, rb.with, 1, "only the committed run's outputs went out")
}

// A step that loses the race for its documents at every one of its runs
// (a burst for the same drones) is copied for a moment later, as for an
// unavailable store: abandoned, it came back at once, and each time
// counted towards the queue's maxDeliveryCount, which dead-letters.
func TestAStepThatLosesEveryRunIsCopiedForLater(t *testing.T) {
	t.Parallel()
	copiedAtCommit(t, slices.Repeat([]error{ports.ErrStale}, 8))
}

// A step that failed on a document its unit of work took from a cache
// that has changed since runs again, rather than dead-lettering the
// message on what it decided from a stale copy; one whose reads are
// current fails as it would have.
func TestAStepThatFailedOnAStaleReadRunsAgain(t *testing.T) {
	t.Parallel()
	fail := func() functionapp.QueueFunc {
		runs := 0
		return func(context.Context, *ports.Delivered) ([]ports.Message, error) {
			if runs++; runs == 1 {
				return nil, &domain.Permanent{Err: errors.New("delivery d1 is cancelled")}
			}
			return []ports.Message{{ID: "d1:next", Queue: "next", Body: []byte(`{}`)}}, nil
		}
	}
	rb := newRecordingBus()
	rb.checks = []error{ports.ErrStale}
	var logs bytes.Buffer
	runStepLogged(t, withBus{rb}, rb, fail(), slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	assert.Equal(t, []string{"complete-with"}, rb.calls, "the second run commits")
	assert.NotContains(t, logs.String(), "can never succeed", "the run that counts succeeded: no error is logged")
	assert.Contains(t, logs.String(), "changed since it was read; it runs again")

	rb = newRecordingBus()
	runStepWith(t, withBus{rb}, rb, fail())
	assert.Equal(t, []string{"dead-letter"}, rb.calls, "its reads were current: the failure stands")
}
