package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/smtpdouble"
)

// notifyPickup and notifyDropoff are the places of the notify-me tests'
// deliveries; the drone starts 300 m south of the pickup.
var (
	notifyPickup  = domain.Location{Latitude: 47.6101, Longitude: -122.3421}
	notifyDropoff = domain.Location{Latitude: 47.6205, Longitude: -122.3493}
	notifyHome    = domain.Location{Latitude: 47.6074, Longitude: -122.3421}
)

// startNotifyDelivery requests a delivery while the fleet is empty, so that
// it waits for a drone, subscribes each body to it, and then registers the
// drone: the first milestone, Scheduled, comes after the subscriptions.
func startNotifyDelivery(t *testing.T, a api, id string, subscribe ...string) (trackingID string, subscriptionIDs []string) {
	t.Helper()
	resp := a.call(t, "POST", "/api/deliveryrequests", deliveryRequest(id, notifyPickup, notifyDropoff, "Small", 1))
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	var accepted struct {
		TrackingID string `json:"trackingId"`
	}
	resp.decode(t, &accepted)
	require.NotEmpty(t, accepted.TrackingID)
	for _, body := range subscribe {
		resp := a.call(t, "POST", "/api/deliveries/"+id+"/notifymerequests", body)
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
		var s struct{ ID string }
		resp.decode(t, &s)
		subscriptionIDs = append(subscriptionIDs, s.ID)
	}
	spec := droneSpec{Location: notifyHome, MaxPayloadKg: 5, MaxPackageSize: "Medium", RangeKm: 40, CruiseSpeedMps: 15, BatteryPercent: 100}
	require.Equal(t, http.StatusCreated, a.fleet(t, "PUT", "/api/drones/"+id+"-drone", spec).Status)
	return accepted.TrackingID, subscriptionIDs
}

// reportAt sends one telemetry report of the delivery's drone.
func reportAt(t *testing.T, a api, droneID string, loc domain.Location, at time.Time) {
	t.Helper()
	resp := a.fleet(t, "POST", "/api/drones/"+droneID+"/telemetry", map[string]any{"location": loc, "batteryPercent": 90, "timestamp": at.Format(time.RFC3339)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
}

var unsubscribeLink = regexp.MustCompile(`https?://\S+/api/unsubscribe/\S+`)

// waitMail waits for a message to rcpt with the given subject.
func waitMail(t *testing.T, srv *smtpdouble.MailServer, rcpt, subject string) smtpdouble.Mail {
	t.Helper()
	var got smtpdouble.Mail
	eventually(t, fmt.Sprintf("an e-mail %q to %s", subject, rcpt), func() bool {
		for _, m := range srv.To(rcpt) {
			if m.Header().Get("Subject") == subject {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func subjectsTo(srv *smtpdouble.MailServer, rcpt string) []string {
	var out []string
	for _, m := range srv.To(rcpt) {
		out = append(out, m.Header().Get("Subject"))
	}
	return out
}

// TestNotifyMeSendsEmailThroughSMTP runs the binary against a real SMTP
// server on loopback that offers STARTTLS and requires a login, as a mail
// provider's submission port does: a delivery's milestones arrive as
// e-mails with the tracking link and an unsubscribe link, and following
// that link stops the mail.
func TestNotifyMeSendsEmailThroughSMTP(t *testing.T) {
	t.Parallel()
	serverTLS, _ := smtpdouble.SelfSignedTLS(t)
	srv := smtpdouble.StartMailServer(t, smtpdouble.MailServerOptions{TLS: serverTLS, Username: "drones", Password: "mail-password-1"})
	// The binary trusts the server's certificate through the roots file
	// Go reads on Linux.
	roots := filepath.Join(t.TempDir(), "roots.pem")
	require.NoError(t, os.WriteFile(roots, smtpdouble.CertPEM(serverTLS), 0o600))
	p := startServeEnv(t, t.TempDir(), []string{
		"SSL_CERT_FILE=" + roots,
		"SMTP_HOST=" + srv.Host, "SMTP_PORT=" + strconv.Itoa(srv.Port), "SMTP_TLS=required",
		"SMTP_USERNAME=drones", "SMTP_PASSWORD=mail-password-1",
		"SMTP_FROM=Fabrikam Drones <drones@fabrikam.example>",
	}, "-banner")
	eventually(t, "the banner", func() bool { return strings.Contains(p.out.String(), "Customer messages") })
	assert.Contains(t, p.out.String(), "e-mail: SMTP "+srv.Addr()+" (TLS required) from drones@fabrikam.example; SMS: kept in the outbox")
	assert.NotContains(t, p.out.String()+p.logs.String(), "mail-password-1", "the password is never printed")

	a := signUp(t, p.base)
	tracking, subs := startNotifyDelivery(t, a, "mailed", `{"emailAddress":"ana@example.com"}`, `{"emailAddress":"ben@example.com"}`)

	scheduled := waitMail(t, srv, "ana@example.com", "Your delivery is scheduled")
	assert.True(t, scheduled.TLS, "sent after STARTTLS")
	assert.Equal(t, "drones", scheduled.Auth)
	assert.Equal(t, "drones@fabrikam.example", scheduled.From)
	text := scheduled.Text()
	trackURL := p.base + "/api/track/" + tracking
	assert.Contains(t, text, "A drone is on its way")
	assert.Contains(t, text, trackURL)
	stop := unsubscribeLink.FindString(text)
	require.NotEmpty(t, stop, text)
	assert.True(t, strings.HasPrefix(stop, p.base+"/api/unsubscribe/"), stop)
	assert.Equal(t, "<"+stop+">", scheduled.Header().Get("List-Unsubscribe"))
	waitMail(t, srv, "ben@example.com", "Your delivery is scheduled")

	// The tracking link in the mail opens the tracking page.
	page := call(t, "GET", trackURL, nil)
	assert.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Type"), "text/html")

	now := time.Now().UTC().Truncate(time.Second)
	reportAt(t, a, "mailed-drone", notifyHome, now)
	reportAt(t, a, "mailed-drone", notifyPickup, now.Add(30*time.Second))
	waitMail(t, srv, "ana@example.com", "Your package is on its way")

	// The link opened (by Ana, or by a scanner before her) shows its
	// button and ends nothing; her mail client's one-click button posts
	// the RFC 8058 form to it, as the mail's List-Unsubscribe-Post says.
	assert.Equal(t, "List-Unsubscribe=One-Click", scheduled.Header().Get("List-Unsubscribe-Post"))
	resp := call(t, "GET", stop, nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	assert.Contains(t, string(resp.Body), `<form method="post">`)
	status, body := oneClick(t, stop)
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "You are unsubscribed")
	var list struct {
		Subscriptions []struct{ ID, EmailAddress string } `json:"subscriptions"`
	}
	a.call(t, "GET", "/api/deliveries/mailed/notifymerequests", nil).decode(t, &list)
	require.Len(t, list.Subscriptions, 1)
	assert.Equal(t, subs[1], list.Subscriptions[0].ID)
	assert.Equal(t, http.StatusNotFound, call(t, "GET", stop, nil).Status, "the link is spent")
	status, _ = oneClick(t, stop)
	assert.Equal(t, http.StatusNotFound, status, "the link is spent")
	// Opened again from a browser, the spent link says so in a page, as the
	// document states (the checked client holds the answer to it).
	req, err := http.NewRequest(http.MethodGet, stop, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	spent, err := checkedClient(t, 30*time.Second).Do(req)
	require.NoError(t, err)
	spent.Body.Close()
	assert.Equal(t, http.StatusNotFound, spent.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", spent.Header.Get("Content-Type"))

	// The delivery completes: ben hears of it, ana does not.
	reportAt(t, a, "mailed-drone", notifyDropoff, now.Add(90*time.Second))
	waitStage(t, a, "mailed", domain.StageCompleted)
	waitMail(t, srv, "ben@example.com", "Your package has been delivered")
	assert.NotContains(t, subjectsTo(srv, "ana@example.com"), "Your package has been delivered")
	assert.Contains(t, subjectsTo(srv, "ana@example.com"), "Your package is on its way", "ana heard of everything before she left")
}

// TestNotifyMeWithoutProviderKeepsAnOutbox is `make run` as shipped:
// neither SMTP nor Azure Communication Services is configured, the banner
// says so, and every message is logged and kept in an outbox the business
// reads.
func TestNotifyMeWithoutProviderKeepsAnOutbox(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "-banner")
	eventually(t, "the banner", func() bool { return strings.Contains(p.out.String(), "Customer e-mail and SMS") })
	// The banner is one write, so the rest of it has come too.
	assert.Contains(t, p.out.String(), "neither SMTP nor Azure Communication")
	assert.Contains(t, p.out.String(), p.base+"/api/deliveries/<deliveryId>/outbox")

	a := signUp(t, p.base)
	tracking, subs := startNotifyDelivery(t, a, "kept", `{"emailAddress":"ana@example.com","sms":"+14255550123"}`)

	type kept struct {
		ID, To, Subject, Text, UnsubscribeURL string
		Channel                               domain.Channel
	}
	var box struct {
		DeliveryID string `json:"deliveryId"`
		Messages   []kept `json:"messages"`
	}
	eventually(t, "the scheduled notice in the outbox", func() bool {
		resp := a.call(t, "GET", "/api/deliveries/kept/outbox", nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		resp.decode(t, &box)
		return len(box.Messages) == 2
	})
	byChannel := map[domain.Channel]kept{}
	for _, m := range box.Messages {
		byChannel[m.Channel] = m
	}
	mail, sms := byChannel[domain.ChannelEmail], byChannel[domain.ChannelSMS]
	assert.Equal(t, "ana@example.com", mail.To)
	assert.Equal(t, "+14255550123", sms.To)
	assert.Equal(t, "kept:n1:to-"+subs[0]+"-email", mail.ID)
	for _, m := range []kept{mail, sms} {
		assert.Contains(t, m.Text, p.base+"/api/track/"+tracking)
		assert.Contains(t, m.Text, m.UnsubscribeURL)
	}
	// The process logged each message as it kept it; the test reads that
	// log from a pipe, which may trail the answer above.
	eventually(t, "the kept message in the log", func() bool {
		logs := p.logs.String()
		return strings.Contains(logs, "customer message kept in the outbox") && strings.Contains(logs, `"customerMessageId":"`+mail.ID+`"`)
	})

	// Another business sees nothing of it.
	other := signUp(t, p.base)
	assert.Equal(t, http.StatusNotFound, other.call(t, "GET", "/api/deliveries/kept/outbox", nil).Status)
	assert.Equal(t, http.StatusNotFound, other.call(t, "GET", "/api/deliveries/kept/notifymerequests", nil).Status)
	assert.Equal(t, http.StatusNotFound, other.call(t, "DELETE", "/api/deliveries/kept/notifymerequests/"+subs[0], nil).Status)

	// The link kept in the outbox works like the one in a sent message.
	status, body := oneClick(t, mail.UnsubscribeURL)
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, http.StatusNotFound, a.call(t, "DELETE", "/api/deliveries/kept/notifymerequests/"+subs[0], nil).Status, "already gone")
	var list struct {
		Subscriptions []any `json:"subscriptions"`
	}
	a.call(t, "GET", "/api/deliveries/kept/notifymerequests", nil).decode(t, &list)
	assert.Empty(t, list.Subscriptions)
}

// oneClick posts an RFC 8058 one-click unsubscribe to link, as a mail
// client does (no key, a form body), held to the OpenAPI document.
func oneClick(t *testing.T, link string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, link, strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := checkedClient(t, 30*time.Second).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
