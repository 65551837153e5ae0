// Package smtpmail sends customer e-mail through any SMTP server (a mail
// provider's submission port, a relay, a local Postfix): the SMTP adapter of
// ports.Messenger. It speaks to the server with net/smtp, one connection
// per message, upgrading to TLS with STARTTLS whenever the server offers it.
package smtpmail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// TLSMode says how the connection to the server is protected.
type TLSMode string

// The TLS modes.
const (
	// TLSAuto upgrades with STARTTLS when the server offers it and goes on
	// in the clear when it does not; credentials are then refused (net/smtp
	// sends them in the clear only to localhost).
	TLSAuto TLSMode = "auto"
	// TLSRequired upgrades with STARTTLS and fails when the server does not
	// offer it, so that nobody between us and the server can strip it.
	TLSRequired TLSMode = "required"
	// TLSImplicit speaks TLS from the first byte (port 465, RFC 8314).
	TLSImplicit TLSMode = "implicit"
)

// Config is how to reach the server and who the mail is from.
type Config struct {
	Host     string
	Port     int // 0: 465 for TLSImplicit, 587 otherwise
	Username string
	Password string
	// From is the sender: an address, or a name and an address
	// ("Fabrikam Drones <drones@fabrikam.example>").
	From string
	TLS  TLSMode // "": TLSAuto
	// TLSConfig verifies the server; nil verifies Host against the system's
	// roots. Tests hand in their own roots.
	TLSConfig *tls.Config
	// Timeout bounds one message from dialling to QUIT; 0 means 30 s.
	Timeout time.Duration
	// HelloName is the name given in EHLO; "" means "localhost", which
	// most submission servers accept from an authenticated client.
	HelloName string
}

// Sender sends e-mail through one SMTP server.
type Sender struct {
	cfg  Config
	from *mail.Address
}

// New checks cfg and returns a sender; nothing is dialled until Send.
func New(cfg Config) (*Sender, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: no host")
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSAuto
	case TLSAuto, TLSRequired, TLSImplicit:
	default:
		return nil, fmt.Errorf("smtp: TLS mode %q must be auto, required or implicit", cfg.TLS)
	}
	if cfg.Port == 0 {
		cfg.Port = 587
		if cfg.TLS == TLSImplicit {
			cfg.Port = 465
		}
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("smtp: port %d out of range", cfg.Port)
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("smtp: give both a username and a password, or neither")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil || !domain.ValidEmailAddress(from.Address) {
		return nil, fmt.Errorf("smtp: sender %q must be an address such as drones@example.com, optionally with a name", cfg.From)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg.TLSConfig = cfg.TLSConfig.Clone()
	if cfg.TLSConfig.ServerName == "" {
		cfg.TLSConfig.ServerName = cfg.Host
	}
	return &Sender{cfg: cfg, from: from}, nil
}

// Addr is the server's host:port.
func (s *Sender) Addr() string { return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)) }

// Describe names the server and how it is reached, for logs and banners.
func (s *Sender) Describe() string {
	return fmt.Sprintf("SMTP %s (TLS %s) from %s", s.Addr(), s.cfg.TLS, s.from.Address)
}

// Send delivers one e-mail. A 5xx answer from the server (a refused
// recipient, sender or credentials) wraps ports.ErrUndeliverable; a 4xx
// answer, a refused connection or a timeout is worth another attempt.
func (s *Sender) Send(ctx context.Context, m ports.Outgoing) error {
	if m.Channel != domain.ChannelEmail {
		return fmt.Errorf("smtp sends e-mail, not %s: %w", m.Channel, ports.ErrUndeliverable)
	}
	if !domain.ValidEmailAddress(m.To) {
		return fmt.Errorf("smtp: recipient %q is not an address: %w", m.To, ports.ErrUndeliverable)
	}
	msg, err := s.compose(m, time.Now())
	if err != nil {
		return err
	}
	return classify(s.deliver(ctx, m.To, msg))
}

func (s *Sender) deliver(ctx context.Context, to string, msg []byte) error {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dialer := &net.Dialer{Deadline: deadline}
	conn, err := dialer.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", s.Addr(), err)
	}
	defer conn.Close()
	// net/smtp takes no context: a deadline on the connection bounds every
	// command, and closing it on cancellation ends a wait early.
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.cfg.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp: TLS with %s: %w", s.Addr(), err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return fmt.Errorf("smtp: greeting of %s: %w", s.Addr(), err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.HelloName); err != nil {
		return fmt.Errorf("smtp: EHLO: %w", err)
	}
	if s.cfg.TLS != TLSImplicit {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.cfg.TLSConfig); err != nil {
				return fmt.Errorf("smtp: STARTTLS with %s: %w", s.Addr(), err)
			}
		} else if s.cfg.TLS == TLSRequired {
			return fmt.Errorf("smtp: %s does not offer STARTTLS, and SMTP TLS mode is required", s.Addr())
		}
	}
	if s.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("smtp: %s offers no AUTH, but a username is configured", s.Addr())
		}
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.cfg.Host)); err != nil {
			return fmt.Errorf("smtp: AUTH as %s: %w", s.cfg.Username, err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: end of message: %w", err)
	}
	// The message is accepted once DATA ends with 250; a failed QUIT after
	// that must not make us send it again.
	_ = c.Quit()
	return nil
}

// classify marks the server's permanent refusals.
func classify(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) && tp.Code >= 500 && tp.Code < 600 {
		return fmt.Errorf("%w: %w", ports.ErrUndeliverable, err)
	}
	return err
}

// compose writes the message: plain text in UTF-8, quoted-printable so
// that any line length and character survive every relay. Message-ID is
// derived from the message's id, so the copies of a retried send carry the
// same one and a mailbox that dedupes on it shows one.
func (s *Sender) compose(m ports.Outgoing, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	sum := sha256.Sum256([]byte(m.ID))
	_, host, _ := strings.Cut(s.from.Address, "@")
	header := []struct{ k, v string }{
		{"From", s.from.String()},
		{"To", m.To},
		{"Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Subject))},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + hex.EncodeToString(sum[:16]) + "@" + host + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
		// RFC 3834: an automatic notice, so auto-responders stay quiet.
		{"Auto-Submitted", "auto-generated"},
	}
	if m.UnsubscribeURL != "" {
		// RFC 2369: mail clients show an unsubscribe button for it; RFC
		// 8058's List-Unsubscribe-Post says the address takes a one-click
		// POST, so a client may unsubscribe without opening a page, and
		// knows that a GET of it changes nothing.
		header = append(header,
			struct{ k, v string }{"List-Unsubscribe", "<" + oneLine(m.UnsubscribeURL) + ">"},
			struct{ k, v string }{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"})
	}
	for _, h := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", h.k, h.v)
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(m.Text)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// oneLine keeps a header value on one line, so that no value can add a
// header of its own.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
