package messaging_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// A channel with no provider keeps its messages in the outbox and logs
// each one; the log must not carry the links' secrets (the tracking id,
// which alone opens the tracking page, and the unsubscribe token) nor the
// full recipient, while the outbox still holds the message as sent.
func TestOutboxLogCarriesNoLinkSecrets(t *testing.T) {
	t.Parallel()
	const (
		trackingID = "trk-7QmZ1vR9xKp2Lw8NcF4s"
		token      = "unsub-Hq3Yt6Vb0Jd5Ne9Ra2Ug7Wc1"
		keptToken  = "kept-Zr8Pq2Lm5Tx9Wb3Vc6Nd0Fh4"
		base       = "https://drones.fabrikam.example/api/"
	)
	track, stop, keptStop := base+"track/"+trackingID, base+"unsubscribe/"+token, base+"unsubscribe/"+keptToken
	// The texts as handlers.composeMessage writes them.
	email := ports.Outgoing{ID: "d-9:n1:to-s1-email", DeliveryID: "d-9", Channel: domain.ChannelEmail, To: "ana.lopez@example.com",
		Subject: "Your package is on its way", UnsubscribeURL: stop, KeptUnsubscribeURL: keptStop,
		Text: "Your package has been picked up.\n\nFollow your delivery live: " + track + "\n\n" +
			"You get these messages because they were asked for when delivery d-9 was arranged.\n" +
			"To get no more of them, open " + stop + "\n"}
	sms := ports.Outgoing{ID: "d-9:n1:to-s1-sms", DeliveryID: "d-9", Channel: domain.ChannelSMS, To: "+14255550123",
		UnsubscribeURL: stop, KeptUnsubscribeURL: keptStop, Text: "Your package has been picked up. Follow it: " + track + " Stop these texts: " + stop}
	// Kept, each carries the link of a kept message, which suppresses
	// nothing, in place of the one for its receiver.
	keptAs := func(m ports.Outgoing) ports.Outgoing {
		m.Text = strings.ReplaceAll(m.Text, stop, keptStop) + "\n[Kept, not sent: its link ends this subscription only.]"
		m.UnsubscribeURL, m.KeptUnsubscribeURL = keptStop, ""
		return m
	}

	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			o := messaging.NewOutbox(slog.New(h(&logs)), 0)
			// Wired as shared/backend wires a channel without a provider.
			r := messaging.Router{Email: o, SMS: o}
			ctx := context.Background()
			require.NoError(t, r.Send(ctx, email))
			require.NoError(t, r.Send(ctx, sms))

			out := logs.String()
			assert.Contains(t, out, "customer message kept in the outbox")
			assert.Contains(t, out, email.ID)
			assert.Contains(t, out, sms.ID)
			for _, secret := range []string{trackingID, token, keptToken, "/api/track/", "/api/unsubscribe/", "ana.lopez", "4255550"} {
				assert.NotContains(t, out, secret)
			}
			assert.Contains(t, out, "@example.com", "the e-mail's domain is kept")
			assert.Contains(t, out, "***0123", "the number's last digits are kept")

			kept, err := o.Kept(ctx, "d-9")
			require.NoError(t, err)
			assert.Equal(t, []ports.Outgoing{keptAs(email), keptAs(sms)}, kept, "the outbox keeps the messages in full, with the kept link")
			for _, m := range kept {
				assert.NotContains(t, m.Text, token, "the receiver's link is not kept")
			}
		})
	}
}

// TestOneAccountCannotPushAnothersMessagesOut: past its bound the outbox
// forgets the oldest message of the account that has the most kept, not
// the oldest of all, so an account sending many keeps another's few.
func TestOneAccountCannotPushAnothersMessagesOut(t *testing.T) {
	t.Parallel()
	o := messaging.NewOutbox(slog.New(slog.DiscardHandler), 4)
	ctx := context.Background()
	send := func(id, delivery, owner string) {
		m := msg(id, delivery, domain.ChannelEmail)
		m.OwnerID = owner
		require.NoError(t, o.Send(ctx, m))
	}
	send("v1", "victim-1", "victim")
	send("v2", "victim-1", "victim")
	for i := range 50 {
		send(fmt.Sprintf("a%d", i), fmt.Sprintf("flood-%d", i%5), "attacker")
	}
	kept, _ := o.Kept(ctx, "victim-1")
	assert.Equal(t, []string{"v1", "v2"}, idsOf(kept), "the victim's two stay")
	kept, _ = o.Kept(ctx, "flood-4")
	assert.Equal(t, []string{"a49"}, idsOf(kept), "the attacker keeps its newest within the bound")
	kept, _ = o.Kept(ctx, "flood-3")
	assert.Equal(t, []string{"a48"}, idsOf(kept))
	// With as many kept each, the oldest goes.
	send("v3", "victim-1", "victim")
	kept, _ = o.Kept(ctx, "victim-1")
	assert.Equal(t, []string{"v2", "v3"}, idsOf(kept))
}
