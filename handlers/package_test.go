package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

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

// A request sent again after its delivery ended, whose package another
// delivery has booked since, is the same request: 202 again, not a 409
// for the package. And a request under a taken deliveryId is a 409 naming
// deliveryId, whatever its package: the id is judged before the package.
func TestAResentRequestIsJudgedByItsIDBeforeItsPackage(t *testing.T) {
	t.Parallel()
	f := newFixture(t) // no drone: deliveries wait
	first := packageRequest("c-1", "cp-1")
	require.Equal(t, http.StatusAccepted, f.ingest(t, first).Status)
	require.Equal(t, http.StatusNoContent, f.cancel(t, "c-1").Status)
	f.drain(t)
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("c-2", "cp-1")).Status)

	resp := f.ingest(t, first)
	require.Equal(t, http.StatusAccepted, resp.Status, string(resp.Body))
	assert.Equal(t, domain.StageCancelled, f.delivery(t, "c-1").Stage)
	p := f.pkg(t, "cp-1")
	assert.Equal(t, "c-2", p.DeliveryID, "the package stays on the delivery that booked it")

	// Another request under c-2's id, naming c-2's busy package, from this
	// account and from another.
	other := packageRequest("c-2", "cp-1")
	other = []byte(strings.Replace(string(other), `"weight":1`, `"weight":2`, 1))
	resp = f.ingest(t, other)
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, "deliveryId", problemOf(t, resp).Field)
	_, otherKey := f.signUpOther(t)
	resp = f.call("IngestDelivery", otherKey, &functionapp.Request{Method: "POST", Body: packageRequest("c-2", "cp-1")})
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	assert.Equal(t, "deliveryId", problemOf(t, resp).Field)
}

// A package shows Booked while its delivery has no drone: a delivery that
// had one and lost it (rescheduled to a later pickup, here) shows its
// package as it showed before the drone was assigned. A package named after
// its delivery (the request left packageId out) keeps the time of the
// delivery's acceptance as its createdAt when its record is written.
func TestAPackageIsBookedWhileItsDeliveryHasNoDrone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.Drone{ID: "d1", Location: at(0.01, 0)})
	require.Equal(t, http.StatusAccepted, f.ingest(t, packageRequest("r1", "rp")).Status)
	f.clock.Advance(time.Second)
	unnamed, _ := json.Marshal(map[string]any{"deliveryId": "r2", "pickupLocation": at(0.01, 0), "dropOffLocation": at(0.02, 0),
		"packageInfo": map[string]any{"size": "Small", "weight": 1}})
	require.Equal(t, http.StatusAccepted, f.ingest(t, unnamed).Status)
	accepted := getPackageOf(t, f, "r2").CreatedAt
	f.clock.Advance(time.Minute)
	f.drain(t)
	require.Equal(t, domain.StageScheduled, f.delivery(t, "r1").Stage)
	assert.Equal(t, "Scheduled", getPackageOf(t, f, "rp").Status)
	require.Empty(t, f.delivery(t, "r2").DroneID, "r2 waits for the one drone")

	later := f.clock.Now().Add(3 * time.Hour).Truncate(time.Second)
	f.reschedule(t, f.key, "r1", map[string]any{"pickupTime": later.Format(time.RFC3339)})
	f.drain(t)
	require.Empty(t, f.delivery(t, "r1").DroneID, "booked for later: no drone")
	assert.Equal(t, "Booked", getPackageOf(t, f, "rp").Status)

	// The drone r1 gave up went to r2, whose package record is written now.
	require.Equal(t, "d1", f.delivery(t, "r2").DroneID)
	p := getPackageOf(t, f, "r2")
	assert.Equal(t, "Scheduled", p.Status)
	assert.True(t, accepted.Equal(p.CreatedAt), "createdAt %s, accepted %s", p.CreatedAt, accepted)
}
