package smtpmail_test

import (
	"context"
	"crypto/tls"
	"errors"
	"mime"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/smtpmail"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/smtpdouble"
)

func message(to string) ports.Outgoing {
	return ports.Outgoing{
		ID: "d-1:n1:to-abc-email", DeliveryID: "d-1", Channel: domain.ChannelEmail, To: to,
		Subject: "Your delivery is on its way – 5 min",
		Text: "A drone is on its way.\n\nTrack it: http://127.0.0.1:7071/api/track/ABC.d-1\n" +
			"Stop these messages: http://127.0.0.1:7071/api/unsubscribe/XYZ.d-1\n" + strings.Repeat("long line ", 20),
		UnsubscribeURL: "http://127.0.0.1:7071/api/unsubscribe/XYZ.d-1",
		At:             time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC),
	}
}

func TestSendsOverSTARTTLSWithAuth(t *testing.T) {
	t.Parallel()
	serverTLS, roots := smtpdouble.SelfSignedTLS(t)
	srv := smtpdouble.StartMailServer(t, smtpdouble.MailServerOptions{TLS: serverTLS, Username: "drones", Password: "s3cret"})
	s, err := smtpmail.New(smtpmail.Config{Host: srv.Host, Port: srv.Port, Username: "drones", Password: "s3cret",
		From: "Fabrikam Drones <drones@fabrikam.example>", TLS: smtpmail.TLSRequired, TLSConfig: &tls.Config{RootCAs: roots}})
	require.NoError(t, err)

	m := message("customer@example.com")
	require.NoError(t, s.Send(context.Background(), m))
	require.NoError(t, s.Send(context.Background(), m), "a retried send goes out again (at least once)")

	got := srv.To("customer@example.com")
	require.Len(t, got, 2)
	mail := got[0]
	assert.True(t, mail.TLS, "upgraded with STARTTLS before anything was sent")
	assert.Equal(t, "drones", mail.Auth)
	assert.Equal(t, "drones@fabrikam.example", mail.From)
	h := mail.Header()
	from, err := h.AddressList("From")
	require.NoError(t, err)
	assert.Equal(t, "Fabrikam Drones", from[0].Name)
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	require.NoError(t, err)
	assert.Equal(t, m.Subject, subject, "a non-ASCII subject survives encoding")
	assert.Equal(t, "<"+m.UnsubscribeURL+">", h.Get("List-Unsubscribe"))
	assert.Equal(t, "List-Unsubscribe=One-Click", h.Get("List-Unsubscribe-Post"), "RFC 8058 one-click")
	assert.Equal(t, "auto-generated", h.Get("Auto-Submitted"))
	assert.Equal(t, h.Get("Message-ID"), got[1].Header().Get("Message-ID"), "a retry carries the same Message-ID")
	assert.True(t, strings.HasSuffix(h.Get("Message-ID"), "@fabrikam.example>"))
	assert.Equal(t, m.Text+"\n", mail.Text(), "the body arrives as written, long lines included")
}

func TestCredentialsAreNeverSentInTheClear(t *testing.T) {
	t.Parallel()
	srv := smtpdouble.StartMailServer(t, smtpdouble.MailServerOptions{Username: "drones", Password: "s3cret"})
	// The server offers neither STARTTLS nor (unencrypted) AUTH.
	s, err := smtpmail.New(smtpmail.Config{Host: srv.Host, Port: srv.Port, Username: "drones", Password: "s3cret", From: "drones@fabrikam.example"})
	require.NoError(t, err)
	err = s.Send(context.Background(), message("customer@example.com"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, ports.ErrUndeliverable), "a server that may be fixed is worth another attempt: %v", err)
	assert.Empty(t, srv.Messages())

	s, err = smtpmail.New(smtpmail.Config{Host: srv.Host, Port: srv.Port, From: "drones@fabrikam.example", TLS: smtpmail.TLSRequired})
	require.NoError(t, err)
	assert.ErrorContains(t, s.Send(context.Background(), message("customer@example.com")), "STARTTLS")
}

func TestPlainServerWithoutTLSIsUsedWhenAllowed(t *testing.T) {
	t.Parallel()
	srv := smtpdouble.StartMailServer(t, smtpdouble.MailServerOptions{})
	s, err := smtpmail.New(smtpmail.Config{Host: srv.Host, Port: srv.Port, From: "drones@fabrikam.example"})
	require.NoError(t, err)
	require.NoError(t, s.Send(context.Background(), message("a@example.com")))
	got := srv.To("a@example.com")
	require.Len(t, got, 1)
	assert.False(t, got[0].TLS)
}

func TestRefusedRecipientIsPermanent(t *testing.T) {
	t.Parallel()
	srv := smtpdouble.StartMailServer(t, smtpdouble.MailServerOptions{RefuseRecipient: "gone@example.com"})
	s, err := smtpmail.New(smtpmail.Config{Host: srv.Host, Port: srv.Port, From: "drones@fabrikam.example"})
	require.NoError(t, err)
	err = s.Send(context.Background(), message("gone@example.com"))
	assert.ErrorIs(t, err, ports.ErrUndeliverable)
	assert.ErrorContains(t, err, "550")

	sms := message("+14255550123")
	sms.Channel = domain.ChannelSMS
	assert.ErrorIs(t, s.Send(context.Background(), sms), ports.ErrUndeliverable, "SMTP does not send SMS")
}

func TestUnreachableServerIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s, err := smtpmail.New(smtpmail.Config{Host: "127.0.0.1", Port: port, From: "drones@fabrikam.example", Timeout: 5 * time.Second})
	require.NoError(t, err)
	err = s.Send(context.Background(), message("a@example.com"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, ports.ErrUndeliverable))
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]smtpmail.Config{
		"no host":          {From: "a@b.example"},
		"no sender":        {Host: "smtp.example"},
		"bad sender":       {Host: "smtp.example", From: "not an address"},
		"user only":        {Host: "smtp.example", From: "a@b.example", Username: "u"},
		"unknown TLS mode": {Host: "smtp.example", From: "a@b.example", TLS: "sometimes"},
		"port":             {Host: "smtp.example", From: "a@b.example", Port: 70000},
	} {
		_, err := smtpmail.New(cfg)
		assert.Error(t, err, name)
	}
	s, err := smtpmail.New(smtpmail.Config{Host: "smtp.example", From: "a@b.example", TLS: smtpmail.TLSImplicit})
	require.NoError(t, err)
	assert.Equal(t, "smtp.example:465", s.Addr())
	s, err = smtpmail.New(smtpmail.Config{Host: "smtp.example", From: "a@b.example"})
	require.NoError(t, err)
	assert.Equal(t, "smtp.example:587", s.Addr())
}
