package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/adapters/webhook"
	"github.com/fabrikam/dronedelivery/shared/ports"
)

const secretToken = "tok_9f3c2e71d4"

// counting is a listener that answers status and counts its requests.
func counting(t *testing.T, status int, header map[string]string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func hook(url string) ports.Webhook {
	return ports.Webhook{AccountID: "acct", URL: url, Secret: "whsec", NotificationID: "d:n1", Body: []byte(`{}`), At: time.Unix(1700000000, 0)}
}

func TestPrivateAddressesAreRefusedWhenDialled(t *testing.T) {
	t.Parallel()
	srv, hits := counting(t, http.StatusOK, nil)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	a := webhook.New(webhook.Options{})
	// The literal address, and names that resolve to loopback: only the
	// address dialled tells, which is what defeats DNS rebinding.
	for _, u := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port} {
		err := a.Post(context.Background(), hook(u+"/hook/"+secretToken+"?token="+secretToken))
		require.Error(t, err, u)
		assert.True(t, errors.Is(err, ports.ErrWebhookRefused), "%s: %v", u, err)
		assert.NotContains(t, err.Error(), secretToken, "the error names scheme and host only")
		assert.Contains(t, err.Error(), "loopback")
	}
	assert.Zero(t, hits.Load(), "nothing reached the listener")

	require.NoError(t, webhook.New(webhook.Options{AllowPrivate: true}).Post(context.Background(), hook(srv.URL+"/hook")))
	assert.Equal(t, int32(1), hits.Load(), "allowed for development, it arrives")
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	target, reached := counting(t, http.StatusOK, nil)
	a := webhook.New(webhook.Options{AllowPrivate: true})
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusFound, http.StatusMovedPermanently, http.StatusPermanentRedirect} {
		from, hits := counting(t, status, map[string]string{"Location": target.URL + "/latest/meta-data/"})
		err := a.Post(context.Background(), hook(from.URL+"/h?token="+secretToken))
		require.Error(t, err, "%d", status)
		assert.False(t, errors.Is(err, ports.ErrWebhookRefused), "a redirect is an ordinary failure, tried again later")
		assert.Contains(t, err.Error(), "redirects are not followed")
		assert.NotContains(t, err.Error(), secretToken)
		assert.Equal(t, int32(1), hits.Load())
	}
	assert.Zero(t, reached.Load(), "the redirect's target was never reached")
}

func TestFailuresNameOnlySchemeAndHost(t *testing.T) {
	t.Parallel()
	failing, _ := counting(t, http.StatusInternalServerError, nil)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	a := webhook.New(webhook.Options{AllowPrivate: true})
	for _, u := range []string{failing.URL, closed.URL, "http://bad host.example"} {
		err := a.Post(context.Background(), hook(u+"/a/"+secretToken+"?sig="+secretToken))
		require.Error(t, err, u)
		assert.NotContains(t, err.Error(), secretToken, u)
	}
	assert.Equal(t, "https://hooks.example:8443", webhook.Redact("https://hooks.example:8443/p/"+secretToken+"?t="+secretToken+"#f"))
	assert.Equal(t, "(unparseable URL)", webhook.Redact("::"))
}

func TestAnAnswerIsReadOnlyInPart(t *testing.T) {
	t.Parallel()
	// A receiver that streams without end: the attempt ends after a
	// bounded read, as a success, long before its generous timeout.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	a := webhook.New(webhook.Options{AllowPrivate: true, Timeout: 10 * time.Minute})
	assert.NoError(t, a.Post(context.Background(), hook(srv.URL)))
}

func TestAnAttemptIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	err := webhook.New(webhook.Options{AllowPrivate: true, Timeout: 200 * time.Millisecond}).Post(context.Background(), hook(srv.URL))
	require.Error(t, err, "an endpoint that never answers fails the attempt")
	assert.False(t, errors.Is(err, ports.ErrWebhookRefused))
}
