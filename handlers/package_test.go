package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// TestSamePackageIDInTwoAccounts: package ids are the businesses' own, so
// two accounts using one id each get their record and their delivery.
func TestSamePackageIDInTwoAccounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "one", Location: at(0.01, 0)}, domain.Drone{ID: "two", Location: at(0.011, 0)})
	otherAcct, otherKey := f.signUpOther(t)
	body := requestBody("mine", at(0.01, 0), at(0.02, 0), "Small", 1)
	require.Equal(t, http.StatusAccepted, f.ingest(t, body).Status)
	theirs := strings.Replace(string(requestBody("theirs", at(0.01, 0), at(0.02, 0), "Small", 1)), "pkg-theirs", "pkg-mine", 1)
	resp := f.call("IngestDelivery", otherKey, &functionapp.Request{Method: "POST", Body: []byte(theirs)})
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	f.drain(t)

	for id, owner := range map[string]string{"mine": f.acct, "theirs": otherAcct} {
		assert.Equal(t, domain.StageScheduled, f.delivery(t, id).Stage, id)
		p, err := f.store.Packages.Find(context.Background(), domain.PackageKey(owner, "pkg-mine"))
		require.NoError(t, err, id)
		assert.Equal(t, id, p.DeliveryID)
		assert.Equal(t, "pkg-mine", p.PackageID)
	}
}

// TestUnrecordablePackageFailsTheDeliveryAndFreesTheDrone: when the package
// step cannot take the record (here a record under the key that names
// another owner, as only a damaged store holds), the delivery fails and its
// drone is free again; it never stays Created with the drone booked.
func TestUnrecordablePackageFailsTheDeliveryAndFreesTheDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "only", Location: at(0.01, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, requestBody("d1", at(0.01, 0), at(0.02, 0), "Small", 1)).Status)
	// The damage comes after the package was booked at acceptance.
	key := domain.PackageKey(f.acct, "pkg-d1")
	_, err := f.store.Packages.Upsert(context.Background(), key, func(*domain.Package) (*domain.Package, error) {
		return &domain.Package{ID: key, PackageID: "pkg-d1", OwnerID: "someone-else", DeliveryID: "x", Status: "Scheduled"}, nil
	})
	require.NoError(t, err)
	f.drain(t)
	d := f.delivery(t, "d1")
	assert.Equal(t, domain.StageFailed, d.Stage)
	assert.Contains(t, d.FailureReason, "pkg-d1")
	dr := f.drone(t, "only")
	assert.Equal(t, domain.DroneAvailable, dr.Status)
	assert.Empty(t, dr.CurrentDeliveryID)
	assert.Equal(t, domain.NotifyFailed, d.Notifications[len(d.Notifications)-1].Kind)
}
