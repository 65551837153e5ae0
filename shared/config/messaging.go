package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// The settings that send customers their e-mail and SMS. With none of
// them, messages are kept in an outbox instead (and logged).
const (
	SMTPHost     = "SMTP_HOST"     // the server; setting it sends e-mail by SMTP
	SMTPPort     = "SMTP_PORT"     // default 587, or 465 with SMTP_TLS=implicit
	SMTPUsername = "SMTP_USERNAME" // AUTH PLAIN, only ever over TLS
	SMTPPassword = "SMTP_PASSWORD"
	SMTPFrom     = "SMTP_FROM" // the sender: an address, or "Name <address>"
	SMTPTLS      = "SMTP_TLS"  // auto (STARTTLS when offered; the default), required, implicit

	ACSEndpoint    = "ACS_ENDPOINT"     // https://<resource>.communication.azure.com
	ACSEmailSender = "ACS_EMAIL_SENDER" // From address in a domain linked to the resource
	ACSSMSSender   = "ACS_SMS_SENDER"   // a number the resource owns, E.164
	ACSClientID    = "ACS_CLIENT_ID"    // a user-assigned managed identity; unset: DefaultAzureCredential

	// PublicBaseURL is where customers reach the API, for the links in
	// their messages; each runtime has a default (see cli).
	PublicBaseURL = "PUBLIC_BASE_URL"
)

// SMTP is how to reach an SMTP server.
type SMTP struct {
	Host, Username, Password, From, TLS string
	Port                                int // 0: the TLS mode's default
}

// ACS is how to reach Azure Communication Services.
type ACS struct {
	Endpoint, EmailSender, SMSSender string
	// Identity is the credential to use: a user-assigned managed identity
	// when ClientID is set, DefaultAzureCredential otherwise.
	Identity Connection
}

// Messaging is the customer-messaging configuration; nil members are not
// configured.
type Messaging struct {
	SMTP          *SMTP
	ACS           *ACS
	PublicBaseURL string
}

// LoadMessaging reads the messaging settings from env. A setting given
// without what it needs, or e-mail configured twice, is an error naming it.
func LoadMessaging(env func(string) string) (*Messaging, error) {
	get := func(k string) string { return strings.TrimSpace(env(k)) }
	m := &Messaging{PublicBaseURL: strings.TrimRight(get(PublicBaseURL), "/")}
	if u := m.PublicBaseURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.RawQuery != "" || p.User != nil {
			return nil, fmt.Errorf("%s %q must be a URL such as https://drones.fabrikam.example (the links in customer messages start with it)", PublicBaseURL, u)
		}
	}
	if host := get(SMTPHost); host != "" {
		s := &SMTP{Host: host, Username: get(SMTPUsername), Password: env(SMTPPassword), From: get(SMTPFrom), TLS: strings.ToLower(get(SMTPTLS))}
		if p := get(SMTPPort); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s %q must be a port number", SMTPPort, p)
			}
			s.Port = n
		}
		switch s.TLS {
		case "", "auto", "required", "implicit":
		default:
			return nil, fmt.Errorf("%s %q must be auto (STARTTLS when the server offers it), required or implicit (TLS from the start, port 465)", SMTPTLS, s.TLS)
		}
		if s.From == "" {
			return nil, fmt.Errorf("%s is set but %s is not: name the sender of customer e-mail", SMTPHost, SMTPFrom)
		}
		if a, err := mail.ParseAddress(s.From); err != nil || !domain.ValidEmailAddress(a.Address) {
			return nil, fmt.Errorf("%s %q must be an address, or a name and an address (Fabrikam Drones <drones@fabrikam.example>)", SMTPFrom, s.From)
		}
		if (s.Username == "") != (s.Password == "") {
			return nil, fmt.Errorf("set both %s and %s, or neither", SMTPUsername, SMTPPassword)
		}
		m.SMTP = s
	} else {
		for _, k := range []string{SMTPPort, SMTPUsername, SMTPPassword, SMTPFrom, SMTPTLS} {
			if get(k) != "" {
				return nil, fmt.Errorf("%s is set but %s is not", k, SMTPHost)
			}
		}
	}
	if ep := get(ACSEndpoint); ep != "" {
		a := &ACS{Endpoint: ep, EmailSender: get(ACSEmailSender), SMSSender: get(ACSSMSSender)}
		a.Identity = Connection{Prefix: "ACS", Endpoint: ep, ClientID: get(ACSClientID), ManagedIdentity: get(ACSClientID) != ""}
		if u, err := url.Parse(ep); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("%s %q must be a URL such as https://<resource>.communication.azure.com", ACSEndpoint, ep)
		}
		if a.EmailSender == "" && a.SMSSender == "" {
			return nil, fmt.Errorf("%s is set but neither %s nor %s is: say what the resource sends", ACSEndpoint, ACSEmailSender, ACSSMSSender)
		}
		if a.EmailSender != "" && !domain.ValidEmailAddress(a.EmailSender) {
			return nil, fmt.Errorf("%s %q must be an address in a domain linked to the resource", ACSEmailSender, a.EmailSender)
		}
		if a.SMSSender != "" && !domain.ValidPhoneNumber(a.SMSSender) {
			return nil, fmt.Errorf("%s %q must be a number of the resource in E.164 form (+18005550123)", ACSSMSSender, a.SMSSender)
		}
		m.ACS = a
	} else {
		for _, k := range []string{ACSEmailSender, ACSSMSSender, ACSClientID} {
			if get(k) != "" {
				return nil, fmt.Errorf("%s is set but %s is not", k, ACSEndpoint)
			}
		}
	}
	if m.SMTP != nil && m.ACS != nil && m.ACS.EmailSender != "" {
		return nil, fmt.Errorf("e-mail is configured twice (%s and %s): keep one", SMTPHost, ACSEmailSender)
	}
	return m, nil
}
