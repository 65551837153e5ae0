package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/messaging"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

type subscriptionDoc struct {
	ID           string    `json:"id"`
	DeliveryID   string    `json:"deliveryId"`
	EmailAddress string    `json:"emailAddress"`
	SMS          string    `json:"sms"`
	CreatedAt    time.Time `json:"createdAt"`
}

func (f *fixture) subscribe(t *testing.T, id, body string) (*functionapp.Response, subscriptionDoc) {
	t.Helper()
	resp := f.biz("PostNotifyMeRequest", &functionapp.Request{Method: "POST", Params: map[string]string{"id": id}, Body: []byte(body)})
	var s subscriptionDoc
	if resp.Status < 300 {
		require.NoError(t, json.Unmarshal(resp.Body, &s), string(resp.Body))
	}
	return resp, s
}

func (f *fixture) subscriptions(t *testing.T, id string) []subscriptionDoc {
	t.Helper()
	resp := f.biz("ListNotifyMeRequests", &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var out struct {
		DeliveryID    string            `json:"deliveryId"`
		Subscriptions []subscriptionDoc `json:"subscriptions"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	require.Equal(t, id, out.DeliveryID)
	require.NotNil(t, out.Subscriptions, "an empty list, not null")
	return out.Subscriptions
}

type outboxDoc struct {
	ID             string         `json:"id"`
	Channel        domain.Channel `json:"channel"`
	To             string         `json:"to"`
	Subject        string         `json:"subject"`
	Text           string         `json:"text"`
	UnsubscribeURL string         `json:"unsubscribeUrl"`
	At             time.Time      `json:"at"`
}

func (f *fixture) outbox(t *testing.T, id string) []outboxDoc {
	t.Helper()
	resp := f.biz("GetOutbox", &functionapp.Request{Method: "GET", Params: map[string]string{"id": id}})
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var out struct {
		Messages []outboxDoc `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	return out.Messages
}

func TestSubscriptionsAreCreatedListedAndDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "sub", Location: at(0.001, 0)})
	f.scheduled(t, "subs", at(0, 0), at(0.01, 0))
	assert.Empty(t, f.subscriptions(t, "subs"))

	resp, a := f.subscribe(t, "subs", `{"emailAddress":"ana@example.com","sms":"+14255550123"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	assert.Equal(t, "/api/deliveries/subs/notifymerequests/"+a.ID, resp.Header.Get("Location"))
	assert.Equal(t, subscriptionDoc{ID: a.ID, DeliveryID: "subs", EmailAddress: "ana@example.com", SMS: "+14255550123", CreatedAt: f.clock.Now()}, a)
	assert.NotContains(t, string(resp.Body), "token", "the unsubscribe secret is the customer's, not the API's")

	again, same := f.subscribe(t, "subs", `{"sms":"+14255550123","emailAddress":"ana@example.com"}`)
	assert.Equal(t, http.StatusOK, again.Status, "the same request again is the same subscription")
	assert.Equal(t, a.ID, same.ID)

	overlap, _ := f.subscribe(t, "subs", `{"emailAddress":"ANA@example.com"}`)
	assert.Equal(t, http.StatusConflict, overlap.Status, "one address hears of a milestone once")
	assert.Equal(t, "emailAddress", problemOf(t, overlap).Field)

	_, b := f.subscribe(t, "subs", `{"emailAddress":"ben@example.com"}`)
	assert.Equal(t, []string{a.ID, b.ID}, ids(f.subscriptions(t, "subs")))

	del := func(sid string) *functionapp.Response {
		return f.biz("DeleteNotifyMeRequest", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "subs", "subscriptionId": sid}})
	}
	assert.Equal(t, http.StatusNoContent, del(a.ID).Status)
	gone := del(a.ID)
	assert.Equal(t, http.StatusNotFound, gone.Status, "gone")
	assert.Equal(t, "subscriptionId", problemOf(t, gone).Field, "the subscription is missing, not the delivery")
	elsewhere := f.biz("DeleteNotifyMeRequest", &functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "nowhere", "subscriptionId": b.ID}})
	assert.Equal(t, http.StatusNotFound, elsewhere.Status)
	assert.Contains(t, problemOf(t, elsewhere).Detail, "delivery nowhere not found")
	assert.Equal(t, http.StatusBadRequest, del("no/such").Status)
	assert.Equal(t, []string{b.ID}, ids(f.subscriptions(t, "subs")))

	// A bounded number per delivery.
	for i := len(f.subscriptions(t, "subs")); i < domain.MaxSubscriptions; i++ {
		resp, _ := f.subscribe(t, "subs", fmt.Sprintf(`{"emailAddress":"c%d@example.com"}`, i))
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	}
	full, _ := f.subscribe(t, "subs", `{"emailAddress":"one-too-many@example.com"}`)
	assert.Equal(t, http.StatusConflict, full.Status)

	for body, field := range map[string]string{
		`{"emailAddress":"not-an-address"}`:    "emailAddress",
		`{"sms":"425 555 0123"}`:               "sms",
		`{"sms":"14255550123"}`:                "sms",
		`{}`:                                   "emailAddress",
		`{"emailAddress":"a@b.example","x":1}`: "x",
	} {
		resp, _ := f.subscribe(t, "subs", body)
		assert.Equal(t, http.StatusBadRequest, resp.Status, body)
		assert.Equal(t, field, problemOf(t, resp).Field, body)
	}
	missing, _ := f.subscribe(t, "no-such-delivery", `{"emailAddress":"a@b.example"}`)
	assert.Equal(t, http.StatusNotFound, missing.Status)
}

func ids(subs []subscriptionDoc) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.ID)
	}
	return out
}

func TestEndedDeliveryTakesNoSubscription(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "end", Location: at(0.001, 0)})
	f.scheduled(t, "ended", at(0, 0), at(0.01, 0))
	require.Equal(t, http.StatusNoContent, f.cancel(t, "ended").Status)
	resp, _ := f.subscribe(t, "ended", `{"emailAddress":"late@example.com"}`)
	assert.Equal(t, http.StatusConflict, resp.Status)
}

// TestMilestonesReachSubscribersAndTheLinkUnsubscribes follows a delivery
// with a provider that sends every message: every milestone reaches every
// channel of every subscription, with the tracking link and a working
// unsubscribe link.
func TestMilestonesReachSubscribersAndTheLinkUnsubscribes(t *testing.T) {
	t.Parallel()
	f, msgr := messaged(t)
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "m1", Location: pickup})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("told", pickup, drop, "Small", 1)).Status)
	_, ana := f.subscribe(t, "told", `{"emailAddress":"ana@example.com","sms":"+14255550123"}`)
	_, ben := f.subscribe(t, "told", `{"emailAddress":"ben@example.com"}`)
	f.drain(t)
	d := f.delivery(t, "told")
	require.Equal(t, domain.StageScheduled, d.Stage)

	kept := sentOf(msgr, "told")
	require.Len(t, kept, 3, "scheduled: ana by e-mail and SMS, ben by e-mail")
	byTo := map[string]outboxDoc{}
	for _, m := range kept {
		byTo[m.To] = m
	}
	track := "https://drones.example/api/track/" + d.TrackingID
	mail := byTo["ana@example.com"]
	assert.Equal(t, domain.ChannelEmail, mail.Channel)
	assert.Equal(t, "Your delivery is scheduled", mail.Subject)
	assert.Equal(t, "told:n1:to-"+ana.ID+"-email", mail.ID)
	assert.Contains(t, mail.Text, d.Notifications[0].Message)
	assert.Contains(t, mail.Text, track)
	assert.True(t, strings.HasPrefix(mail.UnsubscribeURL, "https://drones.example/api/unsubscribe/"), mail.UnsubscribeURL)
	assert.Contains(t, mail.Text, mail.UnsubscribeURL)
	assert.Equal(t, d.Notifications[0].At, mail.At)
	sms := byTo["+14255550123"]
	assert.Equal(t, domain.ChannelSMS, sms.Channel)
	assert.Contains(t, sms.Text, track)
	assert.NotEqual(t, mail.UnsubscribeURL, sms.UnsubscribeURL, "a link for each address, which suppresses only that one")
	assert.NotEqual(t, mail.UnsubscribeURL, byTo["ben@example.com"].UnsubscribeURL)

	// Ana's mail is fetched by a scanner (a HEAD and a GET, as link
	// checkers send): each shows the page with its button and ends nothing.
	token := strings.TrimPrefix(mail.UnsubscribeURL, "https://drones.example/api/unsubscribe/")
	follow := func(fn, method, tok string, h http.Header) *functionapp.Response {
		return f.call(fn, "", &functionapp.Request{Method: method, Params: map[string]string{"token": tok}, Header: h})
	}
	assert.Equal(t, http.StatusOK, follow("UnsubscribePage", http.MethodHead, token, nil).Status)
	page := follow("UnsubscribePage", http.MethodGet, token, nil)
	require.Equal(t, http.StatusOK, page.Status, string(page.Body))
	assert.Equal(t, "text/html; charset=utf-8", page.Header.Get("Content-Type"))
	assert.Equal(t, "no-referrer", page.Header.Get("Referrer-Policy"))
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "form-action 'self'")
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.Equal(t, "DENY", page.Header.Get("X-Frame-Options"))
	assert.Contains(t, string(page.Body), `<form method="post">`, "a button that posts back to the link")
	assert.Len(t, f.subscriptions(t, "told"), 2, "a GET or a HEAD changes nothing")

	// A body that is not a form is refused, and changes nothing.
	notForm := f.call("Unsubscribe", "", &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"token": token},
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{}`)})
	assert.Equal(t, http.StatusUnsupportedMediaType, notForm.Status)
	assert.Len(t, f.subscriptions(t, "told"), 2)

	// Her mail client's one-click button posts the RFC 8058 form.
	done := f.call("Unsubscribe", "", &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"token": token},
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte("List-Unsubscribe=One-Click")})
	require.Equal(t, http.StatusOK, done.Status, string(done.Body))
	assert.Contains(t, string(done.Body), "unsubscribed")
	assert.Equal(t, []string{ben.ID}, ids(f.subscriptions(t, "told")))
	for _, fn := range []string{"UnsubscribePage", "Unsubscribe"} {
		method := map[string]string{"UnsubscribePage": http.MethodGet, "Unsubscribe": http.MethodPost}[fn]
		assert.Equal(t, http.StatusNotFound, follow(fn, method, token, nil).Status, "a spent link: %s", fn)
		// Followed again from a browser, the spent link says so in a page.
		again := follow(fn, method, token, http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}})
		assert.Equal(t, http.StatusNotFound, again.Status)
		assert.Equal(t, "text/html; charset=utf-8", again.Header.Get("Content-Type"))
		assert.Contains(t, string(again.Body), "you are unsubscribed")
		for _, wrong := range []string{"", "nodot", strings.Repeat("A", 32) + ".told", token + "x", strings.Repeat("A", 32) + ".no-such"} {
			resp := follow(fn, method, wrong, nil)
			assert.Equal(t, http.StatusNotFound, resp.Status, wrong)
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		}
	}
	assert.Equal(t, []string{ben.ID}, ids(f.subscriptions(t, "told")), "and changes nothing")

	// The pickup: only ben hears of it.
	f.report(t, "m1", pickup, 95, t0.Add(time.Minute))
	d = f.delivery(t, "told")
	require.Equal(t, domain.StageHeadedToDropoff, d.Stage)
	var pickedUp []outboxDoc
	for _, m := range sentOf(msgr, "told") {
		if m.Subject == "Your package is on its way" {
			pickedUp = append(pickedUp, m)
		}
	}
	require.Len(t, pickedUp, 1)
	assert.Equal(t, "ben@example.com", pickedUp[0].To)
}

// messaged is a fixture whose customer messages go to a scriptedMessenger
// that sends them all, with links on https://drones.example/.
func messaged(t *testing.T) (*fixture, *scriptedMessenger) {
	t.Helper()
	msgr := &scriptedMessenger{}
	return newFixtureWith(t, func(d *handlers.Deps) { d.Config.PublicBaseURL = "https://drones.example/"; d.Messenger = msgr }), msgr
}

// scriptedMessenger fails as told and records what it was asked to send.
type scriptedMessenger struct {
	mu    sync.Mutex
	errs  []error // returned in order; nil when used up
	sent  []ports.Outgoing
	calls int
}

func (m *scriptedMessenger) Send(_ context.Context, o ports.Outgoing) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if len(m.errs) > 0 {
		err := m.errs[0]
		m.errs = m.errs[1:]
		if err != nil {
			return err
		}
	}
	m.sent = append(m.sent, o)
	return nil
}

func (m *scriptedMessenger) snapshot() (int, []ports.Outgoing) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls, append([]ports.Outgoing(nil), m.sent...)
}

// subscribedTo is a fixture whose customer messages go to msgr, with delivery
// id scheduled and ana@example.com subscribed to it by e-mail, drained once:
// the first message has been tried. Its clock starts at the real time, so
// that a retry delayed on it stays out of that drain.
func subscribedTo(t *testing.T, msgr *scriptedMessenger, id string) (*fixture, subscriptionDoc) {
	t.Helper()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Messenger = msgr })
	f.clock.Set(time.Now().UTC())
	f.putDrone(t, domain.Drone{ID: "near-" + id, Location: at(0.001, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(id, at(0, 0), at(0.01, 0), "Small", 1)).Status)
	_, sub := f.subscribe(t, id, `{"emailAddress":"ana@example.com"}`)
	f.drain(t)
	return f, sub
}

func TestCustomerMessageIsRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	msgr := &scriptedMessenger{errs: []error{errors.New("connection refused")}}
	f, sub := subscribedTo(t, msgr, "retry")
	calls, sent := msgr.snapshot()
	require.Equal(t, 1, calls)
	require.Empty(t, sent)

	retry := f.receiveDelayed(t, topology.QueueCustomerMessages)
	assert.Equal(t, "retry:n1:to-"+sub.ID+"-email-retry-1", retry.ID)
	out, err := f.h.SendCustomerMessage(context.Background(), retry)
	require.NoError(t, err)
	assert.Empty(t, out, "sent on the second attempt")
	_, sent = msgr.snapshot()
	require.Len(t, sent, 1)
	assert.Equal(t, "retry:n1:to-"+sub.ID+"-email", sent[0].ID, "the message keeps its id across attempts")

	var env wire.Envelope
	require.NoError(t, json.Unmarshal(retry.Body, &env))
	last := func(attempt int, err error) error {
		msgr.mu.Lock()
		msgr.errs = []error{err}
		msgr.mu.Unlock()
		env.Attempt = attempt
		m := *retry
		m.Body, _ = json.Marshal(env)
		_, serr := f.h.SendCustomerMessage(context.Background(), &m)
		return serr
	}
	assert.True(t, domain.IsPermanent(last(7, errors.New("timeout"))), "dead-lettered after the eighth attempt")
	assert.True(t, domain.IsPermanent(last(0, fmt.Errorf("550 no such mailbox: %w", ports.ErrUndeliverable))), "a final refusal is not retried")

	// Deleted by the business: nothing more is sent for it.
	require.Equal(t, http.StatusNoContent, f.biz("DeleteNotifyMeRequest",
		&functionapp.Request{Method: "DELETE", Params: map[string]string{"id": "retry", "subscriptionId": sub.ID}}).Status)
	before, _ := msgr.snapshot()
	out, err = f.h.SendCustomerMessage(context.Background(), retry)
	require.NoError(t, err)
	assert.Empty(t, out)
	after, _ := msgr.snapshot()
	assert.Equal(t, before, after, "the messenger was not called")
}

// TestAThrottledCustomerMessageWaitsWithoutSpendingAnAttempt: a send the
// provider throttles (an Azure-managed e-mail domain takes 10 an hour)
// waits the time the provider names, however often, and is given up only
// a day after the first throttled try.
func TestAThrottledCustomerMessageWaitsWithoutSpendingAnAttempt(t *testing.T) {
	t.Parallel()
	throttled := &ports.MessageThrottled{RetryAfter: 40 * time.Minute, Detail: "429"}
	// The first try fails otherwise, and its retry, five hours later, is
	// the first the provider throttles.
	msgr := &scriptedMessenger{errs: []error{errors.New("connection refused")}}
	f, sub := subscribedTo(t, msgr, "quota")
	require.Len(t, f.delayed[topology.QueueCustomerMessages], 1)
	retry := f.delayed[topology.QueueCustomerMessages][0]
	delete(f.delayed, topology.QueueCustomerMessages)
	f.clock.Advance(5 * time.Hour)
	msgr.mu.Lock()
	msgr.errs = []error{throttled}
	msgr.mu.Unlock()
	// take receives a message the step sent as the bus would hand it out
	// once its wait is over.
	take := func(m ports.Message) *ports.Delivered {
		m.NotBefore = time.Time{}
		require.NoError(t, f.bus.Publish(context.Background(), m))
		msgs, err := f.bus.Receive(ctxFor(t), topology.QueueCustomerMessages, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		return msgs[0]
	}
	out, err := f.h.SendCustomerMessage(context.Background(), take(retry))
	require.NoError(t, err)
	require.Len(t, out, 1)
	first := out[0]
	assert.WithinRange(t, first.NotBefore, f.clock.Now().Add(40*time.Minute), f.clock.Now().Add(50*time.Minute),
		"it waits what the provider asked, and up to a quarter more")
	wait := take(first)
	assert.True(t, strings.HasPrefix(wait.ID, "quota:n1:to-"+sub.ID+"-email-wait-"), wait.ID)
	var env wire.Envelope
	require.NoError(t, json.Unmarshal(wait.Body, &env))
	assert.Equal(t, 1, env.Attempt, "a throttled send spends no attempt: the one failure is all it has spent")
	require.NotNil(t, env.ThrottledSince)
	assert.True(t, f.clock.Now().Equal(*env.ThrottledSince), "its day of waits counts from the first throttled try, by the service's clock")

	// Throttled again and again, past the eight attempts a failure gets:
	// each wait is a new message, and the last try sends it.
	seen := map[string]bool{wait.ID: true}
	for range 10 {
		msgr.mu.Lock()
		msgr.errs = []error{throttled, throttled}
		msgr.mu.Unlock()
		out, err := f.h.SendCustomerMessage(context.Background(), wait)
		require.NoError(t, err)
		require.Len(t, out, 1)
		assert.False(t, seen[out[0].ID], "each wait has an id of its own: %s", out[0].ID)
		seen[out[0].ID] = true
		again, err := f.h.SendCustomerMessage(context.Background(), wait)
		require.NoError(t, err)
		require.Len(t, again, 1)
		assert.Equal(t, out[0].ID, again[0].ID, "a redelivery makes the same copy, which duplicate detection drops")
		wait = take(out[0])
	}
	out, err = f.h.SendCustomerMessage(context.Background(), wait)
	require.NoError(t, err)
	assert.Empty(t, out)
	_, sent := msgr.snapshot()
	require.Len(t, sent, 1, "sent once the provider took it")
	assert.Equal(t, "quota:n1:to-"+sub.ID+"-email", sent[0].ID, "under the message's own id")

	// Up to a day after the first throttled try it waits; after that the
	// news is stale: a permanent failure. The day is the service's, not
	// the milestone's, which a drone's clock may have dated.
	throttle := func() error {
		msgr.mu.Lock()
		msgr.errs = []error{throttled}
		msgr.mu.Unlock()
		out, err := f.h.SendCustomerMessage(context.Background(), wait)
		if err == nil {
			require.Len(t, out, 1)
			wait = take(out[0])
		}
		return err
	}
	f.clock.Advance(23 * time.Hour)
	require.NoError(t, throttle(), "23 hours after the first throttled try, 28 after the milestone")
	f.clock.Advance(2 * time.Hour)
	err = throttle()
	assert.True(t, domain.IsPermanent(err), "%v", err)

}

func TestOutboxIsAbsentWhenEveryChannelHasAProvider(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Messenger = &scriptedMessenger{} })
	f.putDrone(t, domain.Drone{ID: "o1", Location: at(0.001, 0)})
	f.scheduled(t, "sent", at(0, 0), at(0.01, 0))
	resp := f.biz("GetOutbox", &functionapp.Request{Method: "GET", Params: map[string]string{"id": "sent"}})
	assert.Equal(t, http.StatusNotFound, resp.Status)
	assert.Contains(t, problemOf(t, resp).Detail, "no outbox")
}

// scripted answers every webhook with its current err.
type scripted struct {
	mu    sync.Mutex
	err   error
	calls []ports.Webhook
}

func (s *scripted) Post(_ context.Context, w ports.Webhook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, w)
	return s.err
}

func (s *scripted) answer(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func attemptOf(t *testing.T, m ports.Message) int {
	t.Helper()
	var env wire.Envelope
	require.NoError(t, json.Unmarshal(m.Body, &env))
	return env.Attempt
}

// TestWebhookOutcomes: a webhook held back for its account's share waits
// without spending an attempt, under an id drawn from the message's; one
// held by an open circuit spends one and waits at least the cool-down;
// a refused address ends the notification at once.
func TestWebhookOutcomes(t *testing.T) {
	t.Parallel()
	hooks := &scripted{err: &ports.WebhookHeld{Busy: true, RetryAfter: 7 * time.Second}}
	f := newFixtureWith(t, func(d *handlers.Deps) { d.Webhooks = hooks })
	acct, key := f.signUp(t, `{"name":"Contoso","contactEmail":"ops@contoso.example","webhookUrl":"https://hooks.contoso.example/h?token=x"}`)
	f.putDrone(t, domain.Drone{ID: "w3", Location: at(0.001, 0)})
	body, _ := json.Marshal(map[string]any{"deliveryId": "held", "pickupLocation": at(0, 0),
		"dropOffLocation": at(0.01, 0), "packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", key, &functionapp.Request{Method: "POST", Body: body}).Status)
	f.drain(t)

	require.Len(t, hooks.calls, 1)
	assert.Equal(t, acct, hooks.calls[0].AccountID, "fairness is keyed by the account")
	require.Len(t, f.delayed[topology.QueueNotifications], 1)
	wait := f.delayed[topology.QueueNotifications][0]
	assert.True(t, strings.HasPrefix(wait.ID, "held:n1:wait-"), wait.ID)
	assert.Equal(t, t0.Add(7*time.Second), wait.NotBefore)
	assert.Zero(t, attemptOf(t, wait), "waiting its turn spends no attempt")

	msg := f.receiveDelayed(t, topology.QueueNotifications)
	again, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.NotEqual(t, wait.ID, again[0].ID, "each wait is a new message")
	redelivered, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	assert.Equal(t, again[0].ID, redelivered[0].ID, "a redelivery makes the same copy, which duplicate detection drops")

	hooks.answer(&ports.WebhookHeld{RetryAfter: 10 * time.Minute})
	out, err := f.h.SendNotification(context.Background(), msg)
	require.NoError(t, err)
	require.Len(t, out, 1)
	assert.Equal(t, "held:n1:retry-1", out[0].ID)
	assert.Equal(t, 1, attemptOf(t, out[0]), "an open circuit spends an attempt")
	assert.Equal(t, t0.Add(10*time.Minute), out[0].NotBefore, "not before the cool-down, which is longer than the backoff")

	hooks.answer(fmt.Errorf("webhook to https://hooks.contoso.example: %w: 10.0.0.8 is a private address", ports.ErrWebhookRefused))
	out, err = f.h.SendNotification(context.Background(), msg)
	assert.True(t, domain.IsPermanent(err), "a refused address is not tried again: %v", err)
	assert.Empty(t, out)
	// The same message delivered again (under the Functions host the bus
	// redelivers it until it dead-letters it) is refused again.
	out, err = f.h.SendNotification(context.Background(), msg)
	assert.True(t, domain.IsPermanent(err), "a redelivery of the message given up on is given up on too: %v", err)
	assert.Empty(t, out)
	// Another message to that webhook soon after: logged and acknowledged,
	// so that a webhook at a private address does not fill the dead-letter
	// queue.
	other := *msg
	other.ID, other.DeliveryCount = "held:n1:retry-2", 1
	out, err = f.h.SendNotification(context.Background(), &other)
	assert.NoError(t, err)
	assert.Empty(t, out)
	// Another message delivered again may be one another instance gave up
	// on (each remembers its own): refused again, not acknowledged.
	other.ID, other.DeliveryCount = "held:n1:retry-3", 2
	_, err = f.h.SendNotification(context.Background(), &other)
	assert.True(t, domain.IsPermanent(err), "a redelivered message is given up on: %v", err)
	// A scheduled copy after a transient failure is a first delivery to
	// the bus, though its count includes the copy before it.
	other.ID, other.DeliveryCount = wire.RedeliveryID("held:n1:retry-4", 1), 2
	out, err = f.h.SendNotification(context.Background(), &other)
	assert.NoError(t, err, "a first delivery of a copy is acknowledged like any other")
	assert.Empty(t, out)
}

func TestSignUpRefusesPrivateWebhooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, u := range []string{"http://127.0.0.1:7071/api/deliveryrequests", "http://localhost/", "http://169.254.169.254/", "http://2130706433/"} {
		resp := f.call("CreateAccount", "", &functionapp.Request{Method: "POST",
			Body: fmt.Appendf(nil, `{"name":"A","contactEmail":"a@b.example","webhookUrl":%q}`, u)})
		assert.Equal(t, http.StatusBadRequest, resp.Status, u)
		assert.Contains(t, string(resp.Body), `"webhookUrl"`, u)
	}
	allowed := newFixtureWith(t, allowPrivateWebhooks)
	resp := allowed.call("CreateAccount", "", &functionapp.Request{Method: "POST",
		Body: []byte(`{"name":"A","contactEmail":"a@b.example","webhookUrl":"http://127.0.0.1:7071/h"}`)})
	assert.Equal(t, http.StatusCreated, resp.Status, "allowed for development")
}

// A business that reschedules one delivery over and over does not have its
// subscribers messaged each time: they get the first MaxCustomerNotices
// notices and the one that ends the delivery; every notice still reaches
// the delivery's record.
func TestCustomersGetABoundedNumberOfNotices(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("spam", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	resp, _ := f.subscribe(t, "spam", `{"emailAddress":"ana@example.com"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.drain(t)
	for i := range domain.MaxCustomerNotices + 10 {
		pickup := t0.Add(time.Duration(i+1) * time.Minute)
		body := mustJSON(map[string]any{"pickupTime": pickup.Format(time.RFC3339), "deadline": pickup.Add(2 * time.Hour).Format(time.RFC3339)})
		r := f.biz("RescheduleDelivery", &functionapp.Request{Method: "PATCH", Params: map[string]string{"id": "spam"}, Body: body})
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		f.drain(t)
	}
	require.Greater(t, f.delivery(t, "spam").NotificationCount, domain.MaxCustomerNotices+10, "every reschedule was noticed")
	assert.Len(t, f.outbox(t, "spam"), domain.MaxCustomerNotices)

	require.Equal(t, http.StatusNoContent, f.cancel(t, "spam").Status)
	f.drain(t)
	kept := f.outbox(t, "spam")
	require.Len(t, kept, domain.MaxCustomerNotices+1, "the notice that ends the delivery still goes")
	assert.Contains(t, kept[len(kept)-1].Subject, "cancelled")
}

// TestAnUnsubscribedAddressHearsNoMoreFromTheService follows the
// unsubscribe link of one delivery's message: every subscription of its
// addresses stops, on the business's other deliveries and on another
// business's, with the address in another case or with a +tag; a business
// subscribing it again is answered as usual (201), so that it learns
// nothing of the address, and sends nothing. A link sent for a subscription
// the business ended, and made again, still works.
func TestAnUnsubscribedAddressHearsNoMoreFromTheService(t *testing.T) {
	t.Parallel()
	f, msgr := messaged(t)
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "u1", Location: pickup})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("first", pickup, drop, "Small", 1)).Status)
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("second", pickup, drop, "Small", 1)).Status)
	resp, _ := f.subscribe(t, "first", `{"emailAddress":"ana@example.com","sms":"+14255550123"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	resp, _ = f.subscribe(t, "second", `{"emailAddress":"Ana+deliveries@Example.com"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	resp, ben := f.subscribe(t, "second", `{"emailAddress":"ben@example.com"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "first").Stage, "the one drone flies the first")

	linkTo := func(id, to string) string {
		t.Helper()
		for _, m := range sentOf(msgr, id) {
			if m.To == to {
				return strings.TrimPrefix(m.UnsubscribeURL, "https://drones.example/api/unsubscribe/")
			}
		}
		t.Fatalf("no message to %s on %s", to, id)
		return ""
	}
	press := func(token string) *functionapp.Response {
		return f.call("Unsubscribe", "", &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"token": token}})
	}
	done := press(linkTo("first", "ana@example.com"))
	require.Equal(t, http.StatusOK, done.Status, string(done.Body))
	assert.Contains(t, string(done.Body), "This service will send no more messages")

	// Subscribing her again is answered as any subscription is.
	resp, _ = f.subscribe(t, "first", `{"emailAddress":"ANA@example.COM"}`)
	assert.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))

	// The second delivery gets its drone: ben hears of it, Ana does not,
	// though her subscription to it was made before she unsubscribed.
	f.putDrone(t, domain.Drone{ID: "u2", Location: pickup})
	f.clock.Advance(time.Minute)
	retries := f.delayed[topology.QueueDeliveryRequests]
	delete(f.delayed, topology.QueueDeliveryRequests)
	require.NotEmpty(t, retries, "the second delivery's dispatch is to be tried again")
	require.NoError(t, f.bus.Publish(context.Background(), retries...))
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "second").Stage)
	var to []string
	for _, m := range sentOf(msgr, "second") {
		to = append(to, m.To)
	}
	assert.Equal(t, []string{"ben@example.com"}, to)

	// The business ends ben's subscription and makes it again: the link
	// ben already has still works, and stops him.
	benLink := linkTo("second", "ben@example.com")
	require.Equal(t, http.StatusNoContent, f.biz("DeleteNotifyMeRequest", &functionapp.Request{Method: http.MethodDelete,
		Params: map[string]string{"id": "second", "subscriptionId": ben.ID}}).Status)
	resp, _ = f.subscribe(t, "second", `{"emailAddress":"ben@example.com"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	page := f.call("UnsubscribePage", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"token": benLink}})
	assert.Equal(t, http.StatusOK, page.Status, "the ended subscription's link shows its button")
	require.Equal(t, http.StatusOK, press(benLink).Status)
	assert.Equal(t, http.StatusNotFound, press(benLink).Status, "then it is spent")
	kept := len(sentOf(msgr, "second"))
	require.Equal(t, http.StatusNoContent, f.cancel(t, "second").Status)
	f.drain(t)
	assert.Len(t, sentOf(msgr, "second"), kept, "the cancellation reached neither of them")

	// Another business gets nothing sent to her either.
	otherKey := f.theirs(t, pickup, drop, `{"emailAddress":"ana@example.com"}`, `{"emailAddress":"carl@example.com"}`)
	require.Equal(t, http.StatusNoContent, f.call("CancelDelivery", otherKey, &functionapp.Request{Method: http.MethodDelete,
		Params: map[string]string{"id": "theirs"}}).Status)
	f.drain(t)
	to = nil
	for _, m := range sentOf(msgr, "theirs") {
		to = append(to, m.To)
	}
	assert.Equal(t, []string{"carl@example.com"}, to, "the cancellation reached carl, not her")
}

// A link suppresses only the address it was sent to. A business that
// subscribed someone's phone number beside an e-mail address of its own,
// and pressed the link its own address received, stopped the service
// texting that number for every business. The number's own link still
// works once the e-mailed one ended the subscription, and stops it.
func TestALinkSuppressesOnlyTheAddressItWentTo(t *testing.T) {
	t.Parallel()
	f, msgr := messaged(t)
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "p1", Location: pickup})
	f.putDrone(t, domain.Drone{ID: "p2", Location: pickup})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("paired", pickup, drop, "Small", 1)).Status)
	resp, _ := f.subscribe(t, "paired", `{"emailAddress":"mallory@example.com","sms":"+14255550001"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.drain(t)
	link := map[string]string{}
	for _, m := range sentOf(msgr, "paired") {
		link[m.To] = strings.TrimPrefix(m.UnsubscribeURL, "https://drones.example/api/unsubscribe/")
	}
	require.Len(t, link, 2, "the scheduled notice, by e-mail and SMS")
	press := func(token string) *functionapp.Response {
		return f.call("Unsubscribe", "", &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"token": token}})
	}
	done := press(link["mallory@example.com"])
	require.Equal(t, http.StatusOK, done.Status, string(done.Body))
	assert.Contains(t, string(done.Body), "to the address this link was sent to")
	assert.Empty(t, f.subscriptions(t, "paired"), "the subscription ended")

	// Another business texts the number: it is sent.
	otherKey := f.theirs(t, pickup, drop, `{"sms":"+14255550001"}`)
	f.drain(t)
	var to []string
	for _, m := range sentOf(msgr, "theirs") {
		to = append(to, m.To)
	}
	assert.Equal(t, []string{"+14255550001"}, to, "the number was not suppressed by a link it never received")

	// The link the number received still works, and stops it.
	require.Equal(t, http.StatusOK, press(link["+14255550001"]).Status)
	assert.Equal(t, http.StatusNotFound, press(link["+14255550001"]).Status, "then it is spent")
	require.Equal(t, http.StatusNoContent, f.call("CancelDelivery", otherKey, &functionapp.Request{Method: http.MethodDelete,
		Params: map[string]string{"id": "theirs"}}).Status)
	f.drain(t)
	assert.Len(t, sentOf(msgr, "theirs"), 1, "the cancellation was not texted")
}

// theirs has another business ask for delivery "theirs" and subscribe
// each of subscriptions to it; it returns that business's key.
func (f *fixture) theirs(t *testing.T, pickup, drop domain.Location, subscriptions ...string) string {
	t.Helper()
	_, key := f.signUpOther(t)
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", key, &functionapp.Request{Method: http.MethodPost,
		Body: requestBody("theirs", pickup, drop, "Small", 1)}).Status)
	for _, body := range subscriptions {
		resp := f.call("PostNotifyMeRequest", key, &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"id": "theirs"}, Body: []byte(body)})
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	}
	return key
}

// sentOf is what msgr sent for delivery id, as the outbox would list it.
func sentOf(msgr *scriptedMessenger, id string) []outboxDoc {
	_, sent := msgr.snapshot()
	var out []outboxDoc
	for _, m := range sent {
		if m.DeliveryID == id {
			out = append(out, outboxDoc{ID: m.ID, Channel: m.Channel, To: m.To, Subject: m.Subject, Text: m.Text, UnsubscribeURL: m.UnsubscribeURL, At: m.At})
		}
	}
	return out
}

// TestAKeptMessagesLinkEndsOnlyItsSubscription: a message kept in the
// outbox, which the business reads, carries a link of its own, which ends
// the subscription and suppresses nothing (no address received it), so a
// business cannot stop the service messaging an address for everyone by
// subscribing it and pressing the link it keeps. With e-mail sent and SMS
// kept, the e-mailed link still works once the kept one ended the
// subscription, and that one suppresses.
func TestAKeptMessagesLinkEndsOnlyItsSubscription(t *testing.T) {
	t.Parallel()
	msgr := &scriptedMessenger{}
	f := newFixtureWith(t, func(d *handlers.Deps) {
		d.Config.PublicBaseURL = "https://drones.example/"
		o := messaging.NewOutbox(d.Log, 0)
		d.Messenger, d.Outbox = messaging.Router{Email: msgr, SMS: o}, o
	})
	pickup, drop := at(0, 0), at(0.005, 0)
	f.putDrone(t, domain.Drone{ID: "k1", Location: pickup})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("mine", pickup, drop, "Small", 1)).Status)
	resp, _ := f.subscribe(t, "mine", `{"emailAddress":"ana@example.com","sms":"+14255550123"}`)
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "mine").Stage)

	const base = "https://drones.example/api/unsubscribe/"
	kept := f.outbox(t, "mine")
	require.Len(t, kept, 1, "the SMS is kept")
	mailed := sentOf(msgr, "mine")
	require.Len(t, mailed, 1, "the e-mail is sent")
	keptLink, mailLink := kept[0].UnsubscribeURL, mailed[0].UnsubscribeURL
	require.True(t, strings.HasPrefix(keptLink, base), keptLink)
	assert.Contains(t, kept[0].Text, keptLink, "the kept text carries the kept link")
	assert.NotEqual(t, mailLink, keptLink)
	assert.NotContains(t, kept[0].Text, mailLink, "the business never sees the link it could suppress with")

	press := func(link string) *functionapp.Response {
		return f.call("Unsubscribe", "", &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"token": strings.TrimPrefix(link, base)}})
	}
	page := f.call("UnsubscribePage", "", &functionapp.Request{Method: http.MethodGet, Params: map[string]string{"token": strings.TrimPrefix(keptLink, base)}})
	require.Equal(t, http.StatusOK, page.Status, string(page.Body))
	assert.Contains(t, string(page.Body), "kept rather than sent")
	done := press(keptLink)
	require.Equal(t, http.StatusOK, done.Status, string(done.Body))
	assert.Contains(t, string(done.Body), "Subscription ended")
	assert.Empty(t, f.subscriptions(t, "mine"), "the subscription is ended")
	assert.Equal(t, http.StatusNotFound, press(keptLink).Status, "then the kept link is spent")

	// Another business's subscription to the same addresses still hears.
	_, otherKey := f.signUpOther(t)
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", otherKey, &functionapp.Request{Method: http.MethodPost,
		Body: requestBody("theirs", pickup, drop, "Small", 1)}).Status)
	resp = f.call("PostNotifyMeRequest", otherKey, &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"id": "theirs"},
		Body: []byte(`{"emailAddress":"ana@example.com","sms":"+14255550123"}`)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	require.Equal(t, http.StatusNoContent, f.call("CancelDelivery", otherKey, &functionapp.Request{Method: http.MethodDelete,
		Params: map[string]string{"id": "theirs"}}).Status)
	f.drain(t)
	require.Len(t, sentOf(msgr, "theirs"), 1, "the e-mail of the cancellation went out")
	assert.Equal(t, "ana@example.com", sentOf(msgr, "theirs")[0].To)

	// The link ana got by e-mail works still, and that one suppresses.
	require.Equal(t, http.StatusOK, press(mailLink).Status)
	require.Equal(t, http.StatusAccepted, f.call("IngestDelivery", otherKey, &functionapp.Request{Method: http.MethodPost,
		Body: requestBody("theirs-2", pickup, drop, "Small", 1)}).Status)
	resp = f.call("PostNotifyMeRequest", otherKey, &functionapp.Request{Method: http.MethodPost, Params: map[string]string{"id": "theirs-2"},
		Body: []byte(`{"emailAddress":"ana@example.com"}`)})
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	require.Equal(t, http.StatusNoContent, f.call("CancelDelivery", otherKey, &functionapp.Request{Method: http.MethodDelete,
		Params: map[string]string{"id": "theirs-2"}}).Status)
	f.drain(t)
	assert.Empty(t, sentOf(msgr, "theirs-2"), "once she pressed her own link, nothing more goes to her")
}
