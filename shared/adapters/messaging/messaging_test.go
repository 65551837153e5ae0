package messaging_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/messaging"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

func msg(id, delivery string, ch domain.Channel) ports.Outgoing {
	return ports.Outgoing{ID: id, DeliveryID: delivery, Channel: ch, To: "ana@example.com", Subject: "s", Text: "t"}
}

func TestOutboxKeepsLogsAndForgetsTheOldest(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	o := messaging.NewOutbox(slog.New(slog.NewJSONHandler(&logs, nil)), 3)
	ctx := context.Background()
	require.NoError(t, o.Send(ctx, msg("m1", "d-1", domain.ChannelEmail)))
	require.NoError(t, o.Send(ctx, msg("m1", "d-1", domain.ChannelEmail)), "a retried send")
	require.NoError(t, o.Send(ctx, msg("m2", "d-2", domain.ChannelSMS)))
	require.NoError(t, o.Send(ctx, msg("m3", "d-1", domain.ChannelEmail)))
	kept, err := o.Kept(ctx, "d-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"m1", "m3"}, idsOf(kept), "kept once, oldest first")
	assert.Contains(t, logs.String(), `"customerMessageId":"m2"`)
	assert.Contains(t, logs.String(), `"to":"***@example.com"`, "the recipient masked")
	assert.NotContains(t, logs.String(), "ana@")

	require.NoError(t, o.Send(ctx, msg("m4", "d-2", domain.ChannelEmail)))
	kept, _ = o.Kept(ctx, "d-1")
	assert.Equal(t, []string{"m3"}, idsOf(kept), "the oldest is forgotten past the bound")
	kept, _ = o.Kept(ctx, "d-2")
	assert.Equal(t, []string{"m2", "m4"}, idsOf(kept))
	kept, _ = o.Kept(ctx, "nothing")
	assert.NotNil(t, kept)
	assert.Empty(t, kept)
}

func idsOf(ms []ports.Outgoing) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

type recorder struct{ got []string }

func (r *recorder) Send(_ context.Context, m ports.Outgoing) error {
	r.got = append(r.got, m.ID)
	return nil
}

func TestRouterSendsByChannel(t *testing.T) {
	t.Parallel()
	email, sms := &recorder{}, &recorder{}
	r := messaging.Router{Email: email, SMS: sms}
	ctx := context.Background()
	require.NoError(t, r.Send(ctx, msg("e", "d", domain.ChannelEmail)))
	require.NoError(t, r.Send(ctx, msg("s", "d", domain.ChannelSMS)))
	assert.Equal(t, []string{"e"}, email.got)
	assert.Equal(t, []string{"s"}, sms.got)
	err := messaging.Router{Email: email}.Send(ctx, msg("s2", "d", domain.ChannelSMS))
	assert.ErrorIs(t, err, ports.ErrUndeliverable, fmt.Sprint(err))
}
