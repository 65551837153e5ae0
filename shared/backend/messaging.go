package backend

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/adapters/acs"
	"github.com/fabrikam/dronedelivery/shared/adapters/messaging"
	"github.com/fabrikam/dronedelivery/shared/adapters/smtpmail"
	"github.com/fabrikam/dronedelivery/shared/adapters/webpubsub"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// Messaging is what sends customers their e-mail and SMS.
type Messaging struct {
	Messenger ports.Messenger
	// Outbox reads back the messages of the channels that have no provider;
	// nil when both have one.
	Outbox ports.Outbox
	// Email and SMS say, for logs and banners, where each channel goes.
	Email, SMS string
}

// KeptInOutbox is what Messaging.Email or SMS say of a channel that has no
// provider.
const KeptInOutbox = "kept in the outbox"

// OpenMessaging builds the messenger cfg names: e-mail by SMTP or by Azure
// Communication Services, SMS by Azure Communication Services, and every
// channel without a provider into an in-memory outbox, which logs that it
// kept each message but not what the message says.
func OpenMessaging(cfg *config.Messaging, log *slog.Logger) (*Messaging, error) {
	var out Messaging
	var router messaging.Router
	if s := cfg.SMTP; s != nil {
		sender, err := smtpmail.New(smtpmail.Config{Host: s.Host, Port: s.Port, Username: s.Username, Password: s.Password, From: s.From, TLS: smtpmail.TLSMode(s.TLS)})
		if err != nil {
			return nil, err
		}
		router.Email, out.Email = sender, sender.Describe()
	}
	if a := cfg.ACS; a != nil {
		cred, err := credential(a.Identity)
		if err != nil {
			return nil, err
		}
		client, err := acs.New(acs.Config{Endpoint: a.Endpoint, EmailSender: a.EmailSender, SMSSender: a.SMSSender, Credential: cred})
		if err != nil {
			return nil, err
		}
		if a.EmailSender != "" {
			router.Email, out.Email = client, client.Describe()
		}
		if a.SMSSender != "" {
			router.SMS, out.SMS = client, client.Describe()
		}
	}
	if router.Email == nil || router.SMS == nil {
		o := messaging.NewOutbox(log, 0)
		out.Outbox = o
		if router.Email == nil {
			router.Email, out.Email = o, KeptInOutbox
		}
		if router.SMS == nil {
			router.SMS, out.SMS = o, KeptInOutbox
		}
	}
	out.Messenger = router
	return &out, nil
}

// Describe says where customer messages go, in one line.
func (m *Messaging) Describe() string {
	if m.Email == m.SMS {
		return "e-mail and SMS: " + m.Email
	}
	return fmt.Sprintf("e-mail: %s; SMS: %s", m.Email, m.SMS)
}

// Unsent reports whether any channel keeps its messages in the outbox.
func (m *Messaging) Unsent() bool {
	return strings.Contains(m.Email+m.SMS, KeptInOutbox)
}

// OpenPush builds the Web PubSub client cfg names; nil cfg means none.
func OpenPush(cfg *config.WebPubSub) (*webpubsub.Client, error) {
	if cfg == nil {
		return nil, nil
	}
	cred, err := credential(cfg.Identity)
	if err != nil {
		return nil, err
	}
	return webpubsub.New(webpubsub.Config{Endpoint: cfg.Endpoint, Hub: cfg.Hub, Credential: cred})
}
