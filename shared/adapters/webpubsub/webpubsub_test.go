package webpubsub

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

type fakeCredential struct{ scopes []string }

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.scopes = o.Scopes
	return azcore.AccessToken{Token: "tok", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestRequestsFollowTheRESTReference(t *testing.T) {
	t.Parallel()
	var got []*http.Request
	var bodies []string
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, bodies = append(got, r), append(bodies, string(b))
		if r.URL.Path == "/api/hubs/tracking/:generateToken" {
			w.Write([]byte(`{"token":"a.b.c"}`))
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	cred := &fakeCredential{}
	c, err := New(Config{Endpoint: srv.URL, Hub: "tracking", Credential: cred})
	require.NoError(t, err)

	require.NoError(t, c.SendToGroup(context.Background(), "delivery.d-1", []byte(`{"stage":"Scheduled"}`)))
	r := got[0]
	assert.Equal(t, "POST", r.Method)
	assert.Equal(t, "/api/hubs/tracking/groups/delivery.d-1/:send", r.URL.Path)
	assert.Equal(t, "2024-01-01", r.URL.Query().Get("api-version"))
	assert.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, `{"stage":"Scheduled"}`, bodies[0])
	assert.Equal(t, []string{"https://webpubsub.azure.com/.default"}, cred.scopes)

	u, err := c.ClientURL(context.Background(), "delivery.d-1", 90*time.Minute)
	require.NoError(t, err)
	r = got[1]
	assert.Equal(t, "/api/hubs/tracking/:generateToken", r.URL.Path)
	assert.Equal(t, "delivery.d-1", r.URL.Query().Get("group"))
	assert.Equal(t, "90", r.URL.Query().Get("minutesToExpire"))
	assert.Empty(t, r.URL.Query()["role"], "the client may join its group and do nothing else")
	assert.Equal(t, c.Origin()+"/client/hubs/tracking?access_token=a.b.c", u)
	assert.Equal(t, "ws://"+r.Host, c.Origin())

	// 5xx and 429 are passing; another 4xx is not.
	status = http.StatusServiceUnavailable
	err = c.SendToGroup(context.Background(), "g", []byte(`{}`))
	assert.Equal(t, domain.EUNAVAILABLE, domain.ErrorCode(err))
	status = http.StatusForbidden
	err = c.SendToGroup(context.Background(), "g", []byte(`{}`))
	require.Error(t, err)
	assert.NotEqual(t, domain.EUNAVAILABLE, domain.ErrorCode(err))
}

func TestNewRefusesWhatTheServiceWould(t *testing.T) {
	t.Parallel()
	cred := &fakeCredential{}
	for _, cfg := range []Config{
		{Endpoint: "wps.example", Hub: "tracking", Credential: cred},
		{Endpoint: "https://wps.example/path", Hub: "tracking", Credential: cred},
		{Endpoint: "https://wps.example", Hub: "1hub", Credential: cred},
		{Endpoint: "https://wps.example", Hub: "tracking"},
	} {
		_, err := New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	c, err := New(Config{Endpoint: "https://wps.example/", Hub: "tracking", Credential: cred})
	require.NoError(t, err)
	assert.Equal(t, "wss://wps.example", c.Origin())
}
