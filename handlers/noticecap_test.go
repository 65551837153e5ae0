package handlers_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

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
