package servicebus

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// TestOutageIsUnavailableAndHeals detaches every link and refuses new ones:
// a publish and the settlement of a message received before are
// EUNAVAILABLE, never lost silently; once the window ends the same Bus
// publishes again and settles the held message, whose lock outlived the
// outage.
func TestOutageIsUnavailableAndHeals(t *testing.T) {
	t.Parallel()
	sb, q, bus, _ := startBus(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "before", Queue: q, Body: []byte(`{}`)}))
	held := receiveOne(t, bus, q)

	sb.Fault(t, servicebusdouble.ServiceBusFault{DetachLinks: true, RefuseLinks: true})
	began := time.Now()
	err := bus.Publish(ctx, ports.Message{ID: "during", Queue: q, Body: []byte(`{}`)})
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "publish during the outage: %v", err)
	t.Logf("publish failed after %v: %v", time.Since(began).Round(time.Millisecond), err)
	err = bus.Complete(ctx, held)
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "complete during the outage: %v", err)
	t.Logf("complete failed after %v: %v", time.Since(began).Round(time.Millisecond), err)
	st := sb.FaultState(t)
	assert.Positive(t, st.Detached+st.Refused, "the double failed links")

	sb.Heal(t)
	healed := time.Now()
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "after", Queue: q, Body: []byte(`{}`)}))
	t.Logf("publish after the outage: %v", time.Since(healed).Round(time.Millisecond))
	require.NoError(t, bus.Complete(ctx, held), "the lock outlived the outage")
	t.Logf("complete after the outage: %v", time.Since(healed).Round(time.Millisecond))
	// A failed send is not proof that nothing arrived (the broker may have
	// stored the transfer whose outcome was lost): "during" may be there.
	for {
		got := receiveOne(t, bus, q)
		require.NoError(t, bus.Complete(ctx, got))
		require.Contains(t, []string{"during", "after"}, got.ID)
		if got.ID == "after" {
			break
		}
	}
	t.Logf("received after the outage: %v", time.Since(healed).Round(time.Millisecond))
}

// TestServerBusyIsUnavailable rejects sends with com.microsoft:server-busy.
func TestServerBusyIsUnavailable(t *testing.T) {
	t.Parallel()
	sb, q, bus, _ := startBus(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "before", Queue: q, Body: []byte(`{}`)}))
	sb.Fault(t, servicebusdouble.ServiceBusFault{ServerBusy: true})
	err := bus.Publish(ctx, ports.Message{ID: "during", Queue: q, Body: []byte(`{}`)})
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "publish while busy: %v", err)
	assert.Positive(t, sb.FaultState(t).Busy)
	sb.Heal(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "after", Queue: q, Body: []byte(`{}`)}))
	for _, want := range []string{"before", "after"} {
		got := receiveOne(t, bus, q)
		assert.Equal(t, want, got.ID)
		require.NoError(t, bus.Complete(ctx, got))
	}
}

// TestASilentLinkIsSettledThroughTheManagementLink leaves every settlement
// on the receiving link unanswered: the first Complete times out
// (EUNAVAILABLE), and the retry settles by lock token through the
// management link at once, where on the link it would time out again.
func TestASilentLinkIsSettledThroughTheManagementLink(t *testing.T) {
	t.Parallel()
	sb := servicebusdouble.StartServiceBus(t)
	bus, _ := open(t, sb.ConnectionString(), Options{SettleTimeout: 2 * time.Second})
	q := testQueue(t)
	ctx := ctxFor(t)
	require.NoError(t, bus.Publish(ctx, ports.Message{ID: "m", Queue: q, Body: []byte(`{}`)}))
	held := receiveOne(t, bus, q)

	sb.Fault(t, servicebusdouble.ServiceBusFault{IgnoreSettlements: true})
	err := bus.Complete(ctx, held)
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err), "the link did not answer: %v", err)
	assert.Equal(t, 1, sb.FaultState(t).Ignored)
	began := time.Now()
	require.NoError(t, bus.Complete(ctx, held), "settled by lock token")
	t.Logf("the retry settled in %v", time.Since(began).Round(time.Millisecond))
	assert.Equal(t, 1, sb.FaultState(t).Ignored, "not on the silent link again")
	sb.Heal(t)
	st := sb.Stats(t, q)
	assert.Zero(t, st.Active+st.Locked, "the message is gone: %+v", st)
	err = bus.Complete(ctx, held)
	assert.Equal(t, domain.ECONFLICT, domain.ErrorCode(err), "settled once: %v", err)
}
