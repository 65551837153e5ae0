// Package smtpdouble is an SMTP server for tests that keeps what it receives. It is a test tool.
package smtpdouble

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// MailServerOptions shape the SMTP server a test starts.
type MailServerOptions struct {
	// TLS, when set, makes the server offer STARTTLS with this
	// configuration (SelfSignedTLS makes one for loopback).
	TLS *tls.Config
	// Username and Password, when set, make the server require AUTH PLAIN
	// with them before it takes mail; like a real submission server, it
	// refuses AUTH on a connection that is not encrypted.
	Username, Password string
	// RefuseRecipient makes RCPT TO fail with a permanent 550 for this
	// address.
	RefuseRecipient string
}

// Mail is one message the server accepted.
type Mail struct {
	From string
	To   []string
	Data []byte // as received, headers and body
	TLS  bool   // whether the session was encrypted when the message came
	Auth string // the user the session authenticated as, or ""
}

// Header parses the message's header.
func (m Mail) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return mail.Header{}
	}
	return msg.Header
}

// Text returns the body, decoded when it is quoted-printable.
func (m Mail) Text() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	var r io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(r)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// MailServer is an SMTP server on loopback, built on
// github.com/emersion/go-smtp, that keeps every message it accepts so a
// test can read it back: a real server speaking the protocol, standing in
// for a mail provider.
type MailServer struct {
	Host string
	Port int

	opts MailServerOptions
	srv  *smtp.Server
	mu   sync.Mutex
	mail []Mail
}

// StartMailServer starts a server on a free loopback port; it stops when
// the test ends.
func StartMailServer(t testing.TB, opts MailServerOptions) *MailServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mail server: %v", err)
	}
	m := &MailServer{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, opts: opts}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{server: m, conn: c}, nil
	}))
	m.srv.Domain = "mail.test"
	m.srv.TLSConfig = opts.TLS
	m.srv.ReadTimeout = 30 * time.Second
	m.srv.WriteTimeout = 30 * time.Second
	m.srv.MaxMessageBytes = 1 << 20
	go m.srv.Serve(ln)
	t.Cleanup(func() { m.srv.Close() })
	return m
}

// Addr is host:port.
func (m *MailServer) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Messages returns what the server has accepted so far, oldest first.
func (m *MailServer) Messages() []Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mail(nil), m.mail...)
}

// To returns the messages addressed to rcpt.
func (m *MailServer) To(rcpt string) []Mail {
	var out []Mail
	for _, msg := range m.Messages() {
		for _, to := range msg.To {
			if strings.EqualFold(to, rcpt) {
				out = append(out, msg)
			}
		}
	}
	return out
}

type mailSession struct {
	server *MailServer
	conn   *smtp.Conn
	user   string
	from   string
	to     []string
}

func (s *mailSession) authRequired() bool { return s.server.opts.Username != "" }

func (s *mailSession) AuthMechanisms() []string {
	if !s.authRequired() {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	if !s.authRequired() || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.server.opts.Username || password != s.server.opts.Password {
			return errors.New("invalid username or password")
		}
		s.user = username
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.authRequired() && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.authRequired() && s.user == "" {
		return smtp.ErrAuthRequired
	}
	if r := s.server.opts.RefuseRecipient; r != "" && strings.EqualFold(to, r) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, encrypted := s.conn.TLSConnectionState()
	s.server.mu.Lock()
	s.server.mail = append(s.server.mail, Mail{From: s.from, To: append([]string(nil), s.to...), Data: b, TLS: encrypted, Auth: s.user})
	s.server.mu.Unlock()
	return nil
}

func (s *mailSession) Reset() { s.from, s.to = "", nil }

func (s *mailSession) Logout() error { return nil }

// SelfSignedTLS makes a certificate for 127.0.0.1 and returns the server's
// TLS configuration and a pool that trusts it, for a client under test.
func SelfSignedTLS(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

// CertPEM returns the certificate of a SelfSignedTLS configuration in PEM,
// for a process that takes its roots from a file (SSL_CERT_FILE).
func CertPEM(cfg *tls.Config) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]})
}
