package standalone_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/ports"
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

// runStep runs one queue function over bus until the message is settled.
func runStep(t *testing.T, bus ports.Bus, rb *recordingBus) {
	t.Helper()
	out := ports.Message{ID: "d1:next", Queue: "next", Body: []byte(`{}`)}
	reg := functionapp.Registry{"Step": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) {
		return []ports.Message{out}, nil
	}}}
	fns := []functionapp.FunctionConfig{{Name: "Step", Bindings: []functionapp.Binding{
		{Type: "serviceBusTrigger", Direction: "in", Name: "msg", QueueName: "q", Connection: "ServiceBusConnection"}}}}
	srv, err := standalone.New(reg, fns, bus, slog.New(slog.DiscardHandler), standalone.Options{Workers: 1})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	select {
	case <-rb.settled:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was never settled")
	}
	cancel()
	require.NoError(t, <-done)
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

func TestAFailedCompleteWithAbandons(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	rb.withErr = domain.Unavailable(nil, "bus down")
	runStep(t, withBus{rb}, rb)
	assert.Equal(t, []string{"abandon"}, rb.calls, "nothing went out, so the message is tried again")
}

func TestAStepThatLostARaceRunsAgain(t *testing.T) {
	t.Parallel()
	rb := newRecordingBus()
	rb.stale = []error{ports.ErrStale, ports.ErrStale}
	runStep(t, withBus{rb}, rb)
	assert.Equal(t, []string{"complete-with"}, rb.calls, "the third run commits; nothing was settled before it")
	require.Len(t, rb.with, 1, "only the committed run's outputs went out")
}
