package functionapp_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

func call(t *testing.T, f functionapp.QueueFunc) ([]ports.Message, error) {
	t.Helper()
	return f(context.Background(), &ports.Delivered{Message: ports.Message{ID: "m-1", CorrelationID: "c-1"}, DeliveryCount: 1})
}

func TestUseWrapsQueueFunctionsFirstOutermost(t *testing.T) {
	var order []string
	tag := func(s string) functionapp.Middleware {
		return func(name string, next functionapp.QueueFunc) functionapp.QueueFunc {
			return func(ctx context.Context, m *ports.Delivered) ([]ports.Message, error) {
				order = append(order, s+":"+name)
				return next(ctx, m)
			}
		}
	}
	httpFn := func(context.Context, *functionapp.Request) *functionapp.Response { return nil }
	reg := functionapp.Registry{
		"Step": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) {
			order = append(order, "step")
			return nil, nil
		}},
		"Page": {HTTP: httpFn, Public: true},
	}
	wrapped := reg.Use(tag("a"), tag("b"))
	_, err := call(t, wrapped["Step"].Queue)
	require.NoError(t, err)
	assert.Equal(t, []string{"a:Step", "b:Step", "step"}, order)
	assert.NotNil(t, wrapped["Page"].HTTP)
	assert.True(t, wrapped["Page"].Public)
	order = nil
	_, _ = call(t, reg["Step"].Queue)
	assert.Equal(t, []string{"step"}, order, "the original registry is unchanged")
}

func TestRecovererTurnsAPanicIntoATransientError(t *testing.T) {
	f := functionapp.Recoverer("Step", func(context.Context, *ports.Delivered) ([]ports.Message, error) { panic("boom") })
	out, err := call(t, f)
	require.Error(t, err)
	assert.Nil(t, out)
	assert.Contains(t, err.Error(), "boom")
	assert.False(t, domain.IsPermanent(err), "a panic is retried, not dead-lettered at once")
}

func TestStandardKeepsTheStepsResult(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	permanent := &domain.Permanent{Err: errors.New("bad message")}
	for _, tc := range []struct {
		name string
		err  error
	}{{"success", nil}, {"transient", errors.New("store busy")}, {"permanent", permanent}} {
		t.Run(tc.name, func(t *testing.T) {
			want := []ports.Message{{ID: "next", Queue: "q"}}
			reg := functionapp.Registry{"Step": {Queue: func(context.Context, *ports.Delivered) ([]ports.Message, error) { return want, tc.err }}}
			out, err := call(t, reg.Use(functionapp.Standard(log)...)["Step"].Queue)
			assert.Equal(t, want, out)
			assert.Equal(t, tc.err, err)
		})
	}
}

func TestEmitsOnlyRefusesAnUndeclaredQueue(t *testing.T) {
	emits := map[string][]string{"Step": {"next"}}
	step := func(queue string) functionapp.QueueFunc {
		return func(context.Context, *ports.Delivered) ([]ports.Message, error) {
			return []ports.Message{{ID: "x", Queue: queue}}, nil
		}
	}
	out, err := call(t, functionapp.EmitsOnly(emits)("Step", step("next")))
	require.NoError(t, err)
	assert.Len(t, out, 1)

	out, err = call(t, functionapp.EmitsOnly(emits)("Step", step("elsewhere")))
	require.Error(t, err)
	assert.True(t, domain.IsPermanent(err))
	assert.Nil(t, out)

	_, err = call(t, functionapp.EmitsOnly(emits)("Other", step("next")))
	assert.True(t, domain.IsPermanent(err), "a function the table does not name may emit nothing")

	// What a function publishes itself is held to its row too, an HTTP
	// function's (EmitsOnlyHTTP) as a queue step's.
	publishes := func(queue string) error {
		var got error
		functionapp.Call(context.Background(), functionapp.EmitsOnlyHTTP("Post", emits["Post"], func(ctx context.Context, _ *functionapp.Request) *functionapp.Response {
			got = ports.CheckEmits(ctx, []ports.Message{{ID: "x", Queue: queue}})
			return &functionapp.Response{Status: 204}
		}), &functionapp.Request{})
		return got
	}
	emits["Post"] = []string{"next"}
	assert.NoError(t, publishes("next"))
	assert.ErrorContains(t, publishes("elsewhere"), "Post may not send to queue elsewhere")
	_, err = call(t, functionapp.EmitsOnly(emits)("Step", func(ctx context.Context, _ *ports.Delivered) ([]ports.Message, error) {
		return nil, ports.CheckEmits(ctx, []ports.Message{{ID: "x", Queue: "elsewhere"}})
	}))
	assert.ErrorContains(t, err, "Step may not send to queue elsewhere")
	assert.NoError(t, ports.CheckEmits(context.Background(), []ports.Message{{Queue: "any"}}), "outside a function nothing is checked")
}

// CarryVersions gives a trusting step the versions its message carries on
// a first delivery only, and stamps every step's outputs with what its
// store noted and what it was given and did not touch.
func TestCarryVersionsTrustsFirstDeliveriesOfTrustingSteps(t *testing.T) {
	t.Parallel()
	carried := `{"deliveries/d-1":"e1","drones/dr-1":"e7"}`
	step := func(ctx context.Context, m *ports.Delivered) ([]ports.Message, error) {
		got, _ := ports.CarriedVersion(ctx, "deliveries", "d-1")
		ports.NoteVersion(ctx, "deliveries", "d-1", "e2") // the step's write
		return []ports.Message{{ID: "out", Body: []byte(got)}}, nil
	}
	reg := functionapp.Registry{
		"Trusting": {Queue: step, StartsFromCarriedVersions: true},
		"Reading":  {Queue: step},
	}.Use(functionapp.CarryVersions(map[string]bool{"Trusting": true}))
	for _, c := range []struct {
		name      string
		count     int
		seen      string // what the step was given for d-1
		forwarded string
	}{
		{"Trusting", 1, "e1", `{"deliveries/d-1":"e2","drones/dr-1":"e7"}`},
		{"Trusting", 2, "", `{"deliveries/d-1":"e2"}`}, // a redelivery reads
		{"Reading", 1, "", `{"deliveries/d-1":"e2"}`},
	} {
		out, err := reg[c.name].Queue(context.Background(), &ports.Delivered{Message: ports.Message{ID: "in", Versions: carried}, DeliveryCount: c.count})
		require.NoError(t, err)
		require.Len(t, out, 1)
		assert.Equal(t, c.seen, string(out[0].Body), "%s, delivery %d: version given", c.name, c.count)
		assert.JSONEq(t, c.forwarded, out[0].Versions, "%s, delivery %d: versions sent on", c.name, c.count)
	}
}

// A permanent failure is an error in the log, unless it is another party's
// (a business's webhook that keeps failing), which is a warning: an alert
// on errors must not page anyone for a customer's endpoint.
func TestClassifyLogsAnotherPartysFailureAsAWarning(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, c := range []struct {
		err   error
		level string
	}{
		{&domain.Permanent{Err: errors.New("no such delivery")}, "level=ERROR"},
		{&domain.Permanent{Err: errors.New("webhook failed 8 times"), Elsewhere: true}, "level=WARN"},
		{errors.New("the store is busy"), "level=WARN"},
	} {
		buf.Reset()
		f := functionapp.Classify(log)("Step", func(context.Context, *ports.Delivered) ([]ports.Message, error) { return nil, c.err })
		_, err := call(t, f)
		require.Equal(t, c.err, err)
		assert.Contains(t, buf.String(), c.level, "%v", c.err)
	}
}
