package acs_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/acs"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

// fakeCredential hands out one token and counts how often it was asked.
type fakeCredential struct {
	calls  atomic.Int32
	scopes []string
}

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls.Add(1)
	c.scopes = o.Scopes
	return azcore.AccessToken{Token: "entra-token-123", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// standIn is a loopback stand-in for the Communication Services data plane:
// it checks each request as the REST reference describes it and answers
// the way the service does, or with a scripted status.
type standIn struct {
	t        *testing.T
	mu       sync.Mutex
	requests []recorded
	// status answers the next requests with these statuses, in order.
	status []int
	// smsResult is what the one SMS result says, when set.
	smsResult map[string]any
	// retryAfter is the Retry-After header of a scripted answer, when set;
	// retryAfters, when set, gives the next requests theirs in order.
	retryAfter  string
	retryAfters []string
	// arrived hears of each request once its answer is chosen, and holds,
	// when set, hold the next requests' answers until each is closed.
	arrived chan struct{}
	holds   []chan struct{}
}

type recorded struct {
	method, path, apiVersion, auth, contentType, operationID string
	body                                                     map[string]any
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, recorded{method: r.Method, path: r.URL.Path, apiVersion: r.URL.Query().Get("api-version"),
		auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type"), operationID: r.Header.Get("Operation-Id"), body: body})
	status := http.StatusAccepted
	if len(s.status) > 0 {
		status, s.status = s.status[0], s.status[1:]
	}
	smsResult, retryAfter := s.smsResult, s.retryAfter
	if len(s.retryAfters) > 0 {
		retryAfter, s.retryAfters = s.retryAfters[0], s.retryAfters[1:]
	}
	var hold chan struct{}
	if len(s.holds) > 0 {
		hold, s.holds = s.holds[0], s.holds[1:]
	}
	arrived := s.arrived
	s.mu.Unlock()
	if arrived != nil {
		arrived <- struct{}{}
	}
	if hold != nil {
		<-hold
	}
	w.Header().Set("Content-Type", "application/json")
	if status != http.StatusAccepted {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		w.Write([]byte(`{"error":{"code":"Scripted","message":"scripted answer"}}`))
		return
	}
	switch r.URL.Path {
	case "/emails:send":
		w.Header().Set("Operation-Location", "http://"+r.Host+"/emails/operations/"+r.Header.Get("Operation-Id")+"?api-version=2023-03-31")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"id": r.Header.Get("Operation-Id"), "status": "Running"})
	case "/sms":
		result := map[string]any{"to": "+14255550123", "messageId": "Outgoing_1", "httpStatusCode": 202, "successful": true, "repeatabilityResult": "accepted"}
		if smsResult != nil {
			result = smsResult
		}
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"value": []any{result}})
	default:
		http.NotFound(w, r)
	}
}

// script changes the stand-in's answers between requests.
func (s *standIn) script(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

func (s *standIn) last() recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	require.NotEmpty(s.t, s.requests)
	return s.requests[len(s.requests)-1]
}

func setup(t *testing.T) (*acs.Client, *standIn, *fakeCredential) {
	t.Helper()
	s := &standIn{t: t}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cred := &fakeCredential{}
	c, err := acs.New(acs.Config{Endpoint: srv.URL, EmailSender: "DoNotReply@0000.azurecomm.net", SMSSender: "+18005550100", Credential: cred})
	require.NoError(t, err)
	return c, s, cred
}

func outgoing(ch domain.Channel, to string) ports.Outgoing {
	return ports.Outgoing{
		ID: "d-1:n2:to-abc-" + string(ch), DeliveryID: "d-1", Channel: ch, To: to,
		Subject: "Your package was picked up", Text: "Your package has been picked up.\nTrack it: https://x/api/track/T.d-1",
		UnsubscribeURL: "https://x/api/unsubscribe/U.d-1", At: time.Date(2026, 11, 26, 15, 3, 0, 0, time.UTC),
	}
}

// sentAsPost sends m through c and returns the request s received for it,
// checked as a POST to path with the API version given, carrying the
// credential's token.
func sentAsPost(t *testing.T, c *acs.Client, s *standIn, m ports.Outgoing, path, apiVersion string) recorded {
	t.Helper()
	require.NoError(t, c.Send(context.Background(), m))
	r := s.last()
	assert.Equal(t, http.MethodPost, r.method)
	assert.Equal(t, path, r.path)
	assert.Equal(t, apiVersion, r.apiVersion)
	assert.Equal(t, "Bearer entra-token-123", r.auth)
	return r
}

func TestEmailRequestShape(t *testing.T) {
	t.Parallel()
	c, s, cred := setup(t)
	m := outgoing(domain.ChannelEmail, "customer@example.com")
	r := sentAsPost(t, c, s, m, "/emails:send", "2023-03-31")
	assert.Equal(t, []string{"https://communication.azure.com//.default"}, cred.scopes)
	assert.Equal(t, "application/json", r.contentType)
	assert.Regexp(t, uuidPattern, r.operationID)
	assert.Equal(t, map[string]any{
		"senderAddress": "DoNotReply@0000.azurecomm.net",
		"recipients":    map[string]any{"to": []any{map[string]any{"address": "customer@example.com"}}},
		"content":       map[string]any{"subject": m.Subject, "plainText": m.Text},
		"headers": map[string]any{
			"List-Unsubscribe":      "<https://x/api/unsubscribe/U.d-1>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		},
		"userEngagementTrackingDisabled": true,
	}, r.body)

	require.NoError(t, c.Send(context.Background(), m))
	assert.Equal(t, r.operationID, s.last().operationID, "every attempt of one message names the same operation")
	other := m
	other.ID = "d-1:n3:to-abc-email"
	require.NoError(t, c.Send(context.Background(), other))
	assert.NotEqual(t, r.operationID, s.last().operationID)
	assert.EqualValues(t, 1, cred.calls.Load(), "the token is reused until it nears expiry")
}

func TestSMSRequestShape(t *testing.T) {
	t.Parallel()
	c, s, _ := setup(t)
	m := outgoing(domain.ChannelSMS, "+14255550123")
	r := sentAsPost(t, c, s, m, "/sms", "2021-03-07")
	assert.Equal(t, "+18005550100", r.body["from"])
	assert.Equal(t, m.Text, r.body["message"])
	recipients := r.body["smsRecipients"].([]any)
	require.Len(t, recipients, 1)
	rcpt := recipients[0].(map[string]any)
	assert.Equal(t, "+14255550123", rcpt["to"])
	assert.Regexp(t, uuidPattern, rcpt["repeatabilityRequestId"])
	assert.Equal(t, "Thu, 26 Nov 2026 15:03:00 GMT", rcpt["repeatabilityFirstSent"], "the milestone's time: the same on every attempt")
	assert.Equal(t, false, r.body["smsSendOptions"].(map[string]any)["enableDeliveryReport"])

	// The service has seen this request id before: it was sent.
	s.script(func() {
		s.smsResult = map[string]any{"to": "+14255550123", "httpStatusCode": 202, "successful": false, "repeatabilityResult": "rejected"}
	})
	assert.NoError(t, c.Send(context.Background(), m))
	// The recipient's own result decides, even inside a 202.
	s.script(func() {
		s.smsResult = map[string]any{"to": "+14255550123", "httpStatusCode": 400, "successful": false, "errorMessage": "Invalid To phone number format."}
	})
	assert.ErrorIs(t, c.Send(context.Background(), m), ports.ErrUndeliverable)
	s.script(func() {
		s.smsResult = map[string]any{"to": "+14255550123", "httpStatusCode": 503, "successful": false, "errorMessage": "busy"}
	})
	err := c.Send(context.Background(), m)
	require.Error(t, err)
	assert.False(t, errors.Is(err, ports.ErrUndeliverable))
}

func TestStatusesDecideRetryOrDeadLetter(t *testing.T) {
	t.Parallel()
	for status, permanent := range map[int]bool{
		http.StatusBadRequest:          true,
		http.StatusNotFound:            true,
		http.StatusUnauthorized:        false, // a role assignment still propagating
		http.StatusForbidden:           false,
		http.StatusRequestTimeout:      false,
		http.StatusTooManyRequests:     false,
		http.StatusInternalServerError: false,
		http.StatusServiceUnavailable:  false,
	} {
		c, s, _ := setup(t)
		s.script(func() { s.status = []int{status} })
		err := c.Send(context.Background(), outgoing(domain.ChannelEmail, "customer@example.com"))
		require.Error(t, err, "%d", status)
		assert.Equal(t, permanent, errors.Is(err, ports.ErrUndeliverable), "%d: %v", status, err)
	}
}

// TestAThrottledSendSaysWhenToTryAgain: a 429 (the subscription's
// sending quota used up) is neither final nor an ordinary failure: it
// carries the wait the answer asks for.
func TestAThrottledSendSaysWhenToTryAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header func() string // made when the case runs, for the date's sake
		want   time.Duration
	}{
		{func() string { return "120" }, 2 * time.Minute},
		{func() string { return "" }, time.Minute}, // none named: a minute
		{func() string { return time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat) }, 10 * time.Minute},
	} {
		c, s, _ := setup(t)
		start := time.Now()
		header := tc.header()
		// The wait told is the one named less the time since start, and
		// for a date, which names a whole second, up to a second less.
		inWindow := func(got time.Duration) {
			t.Helper()
			assert.LessOrEqual(t, got, tc.want, "Retry-After %q", header)
			assert.GreaterOrEqual(t, got, tc.want-time.Second-time.Since(start), "Retry-After %q", header)
		}
		s.script(func() { s.status, s.retryAfter = []int{http.StatusTooManyRequests}, header })
		err := c.Send(context.Background(), outgoing(domain.ChannelEmail, "customer@example.com"))
		var throttled *ports.MessageThrottled
		require.ErrorAs(t, err, &throttled, "Retry-After %q", header)
		inWindow(throttled.RetryAfter)
		assert.False(t, errors.Is(err, ports.ErrUndeliverable))

		// Until the wait is over, a send is not asked of the service,
		// where it would count against the quota again.
		asked := len(s.requests)
		err = c.Send(context.Background(), outgoing(domain.ChannelEmail, "other@example.com"))
		require.ErrorAs(t, err, &throttled)
		inWindow(throttled.RetryAfter)
		assert.Len(t, s.requests, asked, "no request while the quota is used up")
	}
	// Two sends in flight together told different waits (the hour's quota
	// answered first, the minute's last): the longest holds.
	c, s, _ := setup(t)
	first, second := make(chan struct{}), make(chan struct{})
	s.script(func() {
		s.status = []int{http.StatusTooManyRequests, http.StatusTooManyRequests}
		s.retryAfters = []string{"3600", "1"}
		s.arrived, s.holds = make(chan struct{}, 2), []chan struct{}{first, second}
	})
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- c.Send(context.Background(), outgoing(domain.ChannelEmail, "customer@example.com")) }()
	}
	<-s.arrived
	<-s.arrived
	close(first)
	require.Error(t, <-done)
	close(second)
	require.Error(t, <-done)
	var held *ports.MessageThrottled
	require.ErrorAs(t, c.Send(context.Background(), outgoing(domain.ChannelEmail, "other@example.com")), &held)
	assert.Greater(t, held.RetryAfter, 59*time.Minute, "the hour's wait holds")

	for _, huge := range []string{"10000000000", "99999999999999999"} {
		c, s, _ := setup(t)
		s.script(func() { s.status, s.retryAfter = []int{http.StatusTooManyRequests}, huge })
		var throttled *ports.MessageThrottled
		require.ErrorAs(t, c.Send(context.Background(), outgoing(domain.ChannelEmail, "customer@example.com")), &throttled)
		assert.Equal(t, 24*time.Hour, throttled.RetryAfter, "a wait of %s s is taken as a day", huge)
	}
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	cred := &fakeCredential{}
	for name, cfg := range map[string]acs.Config{
		"no endpoint":      {EmailSender: "a@b.example", Credential: cred},
		"endpoint path":    {Endpoint: "https://x.communication.azure.com/emails", EmailSender: "a@b.example", Credential: cred},
		"no sender":        {Endpoint: "https://x.communication.azure.com", Credential: cred},
		"bad e-mail":       {Endpoint: "https://x.communication.azure.com", EmailSender: "nobody", Credential: cred},
		"bad number":       {Endpoint: "https://x.communication.azure.com", SMSSender: "0800 123", Credential: cred},
		"no credential":    {Endpoint: "https://x.communication.azure.com", EmailSender: "a@b.example"},
		"not a URL at all": {Endpoint: "x.communication.azure.com", EmailSender: "a@b.example", Credential: cred},
	} {
		_, err := acs.New(cfg)
		assert.Error(t, err, name)
	}
	c, err := acs.New(acs.Config{Endpoint: "https://x.communication.azure.com/", EmailSender: "a@b.example", Credential: cred})
	require.NoError(t, err)
	assert.ErrorIs(t, c.Send(context.Background(), outgoing(domain.ChannelSMS, "+14255550123")), ports.ErrUndeliverable, "no SMS sender")
	assert.EqualValues(t, 0, cred.calls.Load(), "nothing was called")
}
