package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// listPage is the body of GET /api/deliveries as a client reads it.
type listPage struct {
	Items []struct {
		ID        string    `json:"id"`
		OwnerID   string    `json:"ownerId"`
		Stage     string    `json:"stage"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"items"`
	NextCursor string `json:"nextCursor"`
}

func (f *fixture) list(key string, q url.Values) *functionapp.Response {
	return f.call("ListDeliveries", key, &functionapp.Request{Method: "GET", Query: q})
}

func TestListDeliveriesPagesTheCallersOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, otherKey := f.signUpOther(t)
	var mine []string
	for i := range 5 {
		f.clock.Advance(time.Second)
		id := fmt.Sprintf("mine-%d", i)
		require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody(id, at(0, 0), at(0.01, 0), "Small", 1)).Status)
		mine = append([]string{id}, mine...)
		other := f.call("IngestDelivery", otherKey, &functionapp.Request{Method: "POST", Body: requestBody(fmt.Sprintf("theirs-%d", i), at(0, 0), at(0.01, 0), "Small", 1)})
		require.Equal(t, http.StatusAccepted, other.Status, string(other.Body))
	}

	var got []string
	q := url.Values{"limit": {"2"}}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "the listing ends")
		resp := f.list(f.key, q)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var page listPage
		require.NoError(t, json.Unmarshal(resp.Body, &page))
		for _, it := range page.Items {
			assert.Equal(t, f.acct, it.OwnerID)
			assert.Equal(t, "Created", it.Stage)
			got = append(got, it.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	assert.Equal(t, mine, got, "every delivery once, newest first")

	// The same view as GET /api/deliveries/{id}.
	resp := f.list(f.key, url.Values{"limit": {"1"}})
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &page))
	one := f.biz("GetDelivery", &functionapp.Request{Method: "GET", Params: map[string]string{"id": mine[0]}})
	assert.JSONEq(t, string(one.Body), string(page.Items[0]))

	resp = f.list(f.key, url.Values{"stage": {"Completed"}})
	require.Equal(t, http.StatusOK, resp.Status)
	assert.JSONEq(t, `{"items":[]}`, string(resp.Body), "an empty page is an empty list, without a cursor")
}

func TestListDeliveriesRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cursor := func(s string) url.Values { return url.Values{"cursor": {s}} }
	for _, c := range []struct {
		name   string
		q      url.Values
		status int
		field  string
	}{
		{"unknown stage", url.Values{"stage": {"Lost"}}, 400, "stage"},
		{"stage in another case", url.Values{"stage": {"completed"}}, 400, "stage"},
		{"createdFrom not a time", url.Values{"createdFrom": {"yesterday"}}, 400, "createdFrom"},
		{"createdTo without a zone", url.Values{"createdTo": {"2026-11-26T15:04:05"}}, 400, "createdTo"},
		{"createdFrom empty", url.Values{"createdFrom": {""}}, 400, "createdFrom"},
		{"createdFrom out of range", url.Values{"createdFrom": {"1999-12-31T23:59:59Z"}}, 400, "createdFrom"},
		{"range backwards", url.Values{"createdFrom": {"2026-11-26T15:00:00Z"}, "createdTo": {"2026-11-26T14:00:00Z"}}, 400, "createdTo"},
		{"limit zero", url.Values{"limit": {"0"}}, 400, "limit"},
		{"limit above 200", url.Values{"limit": {"201"}}, 400, "limit"},
		{"limit not a number", url.Values{"limit": {"ten"}}, 400, "limit"},
		{"limit with a sign", url.Values{"limit": {"+5"}}, 400, "limit"},
		{"cursor not base64", cursor("%%%"), 400, "cursor"},
		{"cursor not ours", cursor("eyJmb28iOiJiYXIifQ"), 400, "cursor"},
		{"cursor empty", cursor(""), 400, "cursor"},
		{"a parameter twice", url.Values{"stage": {"Created", "Failed"}}, 400, "stage"},
		{"an unknown parameter", url.Values{"stages": {"Created"}}, 400, "stages"},
		{"another owner", url.Values{"ownerId": {"someone-else"}}, 403, "ownerId"},
	} {
		resp := f.list(f.key, c.q)
		assert.Equal(t, c.status, resp.Status, "%s: %s", c.name, resp.Body)
		assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), c.name)
		var p functionapp.ProblemDetails
		require.NoError(t, json.Unmarshal(resp.Body, &p), c.name)
		assert.Equal(t, c.field, p.Field, c.name)
	}
	ok := f.list(f.key, url.Values{"ownerId": {f.acct}, "limit": {"200"}, "stage": {"Created"},
		"createdFrom": {"2026-01-01T00:00:00.5+01:00"}, "createdTo": {"2999-01-01T00:00:00Z"}, "code": {"a-function-key"}})
	assert.Equal(t, http.StatusOK, ok.Status, string(ok.Body))

	assert.Equal(t, http.StatusUnauthorized, f.list("", nil).Status)
	assert.Equal(t, http.StatusForbidden, f.list(operatorKey, nil).Status, "the operator acts for no business")
}
