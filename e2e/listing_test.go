package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestListingEndToEnd(t *testing.T) { onEmbedded(t, listingScenario) }

// listedDelivery is an item of GET /api/deliveries as a client reads it.
type listedDelivery struct {
	ID        string       `json:"id"`
	OwnerID   string       `json:"ownerId"`
	Stage     domain.Stage `json:"stage"`
	CreatedAt time.Time    `json:"createdAt"`
}

// walkListing follows GET /api/deliveries?q from its first page to its last
// and returns every item in the order listed. It fails on a page longer
// than its limit, an item of another account, or an item listed twice.
func walkListing(t *testing.T, a api, owner string, q url.Values) []listedDelivery {
	t.Helper()
	limit := 50
	if s := q.Get("limit"); s != "" {
		_, err := fmt.Sscan(s, &limit)
		require.NoError(t, err)
	}
	q = maps0(q)
	seen := map[string]bool{}
	var all []listedDelivery
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "the listing ends")
		resp := a.call(t, "GET", "/api/deliveries?"+q.Encode(), nil)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		var page struct {
			Items      []listedDelivery `json:"items"`
			NextCursor *string          `json:"nextCursor"`
		}
		resp.decode(t, &page)
		require.NotNil(t, page.Items, "items is a list, even when empty")
		require.LessOrEqual(t, len(page.Items), limit)
		for _, it := range page.Items {
			require.Equal(t, owner, it.OwnerID, "%s in the listing of %s", it.ID, owner)
			require.False(t, seen[it.ID], "%s listed twice", it.ID)
			seen[it.ID] = true
			all = append(all, it)
		}
		if page.NextCursor == nil {
			return all
		}
		require.NotEmpty(t, *page.NextCursor)
		q.Set("cursor", *page.NextCursor)
	}
}

// maps0 copies query values, so a walk's cursor stays its own.
func maps0(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

func idsOf(items []listedDelivery) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// keep returns the ids of items for which ok holds, in order.
func keep(items []listedDelivery, ok func(listedDelivery) bool) []string {
	ids := []string{}
	for _, it := range items {
		if ok(it) {
			ids = append(ids, it.ID)
		}
	}
	return ids
}

// listingScenario has two accounts make 250 deliveries between them, with
// no drone to fly any: some are cancelled, some fail at once for want of a
// drone before their deadline, the rest stay Created. Then every filter and
// page size walks each account's deliveries exactly once, newest first,
// and never shows the other account's.
func listingScenario(t *testing.T, p *proc) {
	a, b := signUp(t, p.base), signUp(t, p.base)
	acctA, acctB := acctIDOf(t, a), acctIDOf(t, b)
	run := time.Now().UnixNano()
	type made struct {
		id    string
		stage domain.Stage
	}
	var madeA, madeB []made
	post := func(who api, id string, failFast bool) {
		body := deliveryRequest(id, domain.Location{Latitude: 47.61, Longitude: -122.33}, domain.Location{Latitude: 47.62, Longitude: -122.32}, "Small", 1)
		if failFast {
			// A deadline a second after the pickup: the first attempt that
			// finds no drone cannot wait for another.
			pickup := time.Now().UTC().Truncate(time.Second)
			body["pickupTime"] = pickup.Format(time.RFC3339)
			body["deadline"] = pickup.Add(time.Second).Format(time.RFC3339)
		}
		resp := who.call(t, "POST", "/api/deliveryrequests", body)
		require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	}
	for i := range 250 {
		if i%25 < 17 { // 170 for a, interleaved with 80 for b
			id := fmt.Sprintf("la-%d-%03d", run, len(madeA))
			m := made{id, domain.StageCreated}
			switch len(madeA) % 10 {
			case 3:
				m.stage = domain.StageCancelled
			case 7:
				m.stage = domain.StageFailed
			}
			post(a, id, m.stage == domain.StageFailed)
			if m.stage == domain.StageCancelled {
				require.Equal(t, http.StatusNoContent, a.call(t, "DELETE", "/api/deliveryrequests/"+id, nil).Status)
			}
			madeA = append(madeA, m)
		} else {
			id := fmt.Sprintf("lb-%d-%03d", run, len(madeB))
			m := made{id, domain.StageCreated}
			post(b, id, false)
			if len(madeB)%8 == 0 {
				m.stage = domain.StageCancelled
				require.Equal(t, http.StatusNoContent, b.call(t, "DELETE", "/api/deliveryrequests/"+id, nil).Status)
			}
			madeB = append(madeB, m)
		}
	}
	require.Len(t, madeA, 170)
	require.Len(t, madeB, 80)
	// Newest first is the reverse of the order they were made in.
	expect := func(ms []made, ok func(made) bool) []string {
		ids := []string{}
		for i := len(ms) - 1; i >= 0; i-- {
			if ok == nil || ok(ms[i]) {
				ids = append(ids, ms[i].id)
			}
		}
		return ids
	}
	inStage := func(s domain.Stage) func(made) bool { return func(m made) bool { return m.stage == s } }
	stageQuery := func(s domain.Stage, limit string) url.Values {
		return url.Values{"stage": {string(s)}, "limit": {limit}}
	}

	// The failing ones fail in the schedule step, a moment after the 202.
	wantFailed := expect(madeA, inStage(domain.StageFailed))
	eventually(t, "the deliveries without a drone in time to fail", func() bool {
		return len(walkListing(t, a, acctA, stageQuery(domain.StageFailed, "200"))) == len(wantFailed)
	})

	everyA := walkListing(t, a, acctA, nil)
	assert.Equal(t, expect(madeA, nil), idsOf(everyA), "a's deliveries, default page size")
	for i := 1; i < len(everyA); i++ {
		require.False(t, everyA[i].CreatedAt.After(everyA[i-1].CreatedAt), "newest first at %d", i)
	}
	for _, limit := range []string{"1", "7", "200"} {
		assert.Equal(t, expect(madeA, nil), idsOf(walkListing(t, a, acctA, url.Values{"limit": {limit}})), "a, %s a page", limit)
	}
	for _, s := range []domain.Stage{domain.StageCreated, domain.StageCancelled, domain.StageFailed} {
		got := walkListing(t, a, acctA, stageQuery(s, "9"))
		assert.Equal(t, expect(madeA, inStage(s)), idsOf(got), "a's %s deliveries", s)
		for _, it := range got {
			assert.Equal(t, s, it.Stage)
		}
	}
	assert.Empty(t, walkListing(t, a, acctA, stageQuery(domain.StageCompleted, "50")), "nothing was delivered")

	// A creation-time window, its bounds taken from listed deliveries:
	// from is inclusive, to exclusive.
	from, to := everyA[120].CreatedAt, everyA[40].CreatedAt
	inWindow := func(it listedDelivery) bool { return !it.CreatedAt.Before(from) && it.CreatedAt.Before(to) }
	window := url.Values{"createdFrom": {from.Format(time.RFC3339Nano)}, "createdTo": {to.Format(time.RFC3339Nano)}, "limit": {"11"}}
	got := walkListing(t, a, acctA, window)
	assert.Equal(t, keep(everyA, inWindow), idsOf(got), "a's deliveries created in the window")
	assert.Equal(t, everyA[41].ID, got[0].ID, "to is exclusive")
	assert.Equal(t, everyA[120].ID, got[len(got)-1].ID, "from is inclusive")
	window.Set("stage", string(domain.StageCreated))
	assert.Equal(t, keep(everyA, func(it listedDelivery) bool { return inWindow(it) && it.Stage == domain.StageCreated }),
		idsOf(walkListing(t, a, acctA, window)), "a's Created deliveries in the window")

	// The other account sees its own, whatever it asks.
	assert.Equal(t, expect(madeB, nil), idsOf(walkListing(t, b, acctB, url.Values{"limit": {"13"}})), "b's deliveries")
	assert.Equal(t, expect(madeB, inStage(domain.StageCancelled)), idsOf(walkListing(t, b, acctB, stageQuery(domain.StageCancelled, "3"))), "b's cancelled")
	assert.Empty(t, walkListing(t, b, acctB, stageQuery(domain.StageFailed, "50")), "b has no failed delivery")
	// A cursor of a's listing positions b's listing in time, nothing more.
	page := a.call(t, "GET", "/api/deliveries?limit=30", nil)
	var first struct {
		NextCursor string `json:"nextCursor"`
	}
	page.decode(t, &first)
	require.NotEmpty(t, first.NextCursor)
	resp := b.call(t, "GET", "/api/deliveries?limit=200&cursor="+url.QueryEscape(first.NextCursor), nil)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	var borrowed struct {
		Items []listedDelivery `json:"items"`
	}
	resp.decode(t, &borrowed)
	for _, it := range borrowed.Items {
		assert.Equal(t, acctB, it.OwnerID)
	}

	// What cannot be read is refused, naming the parameter.
	sendingMalformed(t, func() {
		for param, value := range map[string]string{"stage": "Delivered", "createdFrom": "26/11/2026", "createdTo": "2026-11-26", "limit": "500", "cursor": "not-a-cursor"} {
			resp := a.call(t, "GET", "/api/deliveries?"+url.Values{param: {value}}.Encode(), nil)
			require.Equal(t, http.StatusBadRequest, resp.Status, "%s=%s: %s", param, value, resp.Body)
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			var prob struct{ Field string }
			resp.decode(t, &prob)
			assert.Equal(t, param, prob.Field)
		}
		assert.Equal(t, http.StatusUnauthorized, call(t, "GET", p.base+"/api/deliveries", nil).Status)
	})
	assert.NotContains(t, p.logs.String(), `"level":"ERROR"`, "no request or step failed")
}
