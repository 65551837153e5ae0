package cosmos

import (
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports/porttest"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
)

// TestOutagesAreUnavailable holds the adapter, over azcosmos v1.5.0's
// own retry policies, to what the layers above rely on: a throttle the
// SDK could not wait out, a 503, a dropped and a refused connection all
// surface as EUNAVAILABLE (never ENOTFOUND, which a step would take as
// final), a throttle shorter than the SDK's retries is ridden out, a fault
// on one container leaves the others alone, and once the window ends the
// same client works again; the drone index's first load reports the outage
// and loads once it ends.
func TestOutagesAreUnavailable(t *testing.T) {
	t.Parallel()
	double := cosmosdouble.StartCosmosDouble(t)
	e := &env{conn: double.ConnectionString()}
	// As shared/backend builds it: nine retries of a 429.
	o := &azcosmos.ClientOptions{}
	o.Retry.MaxRetries = 9
	e.client = e.newClient(t, o)
	s := e.open(t, e.client, e.freshDB(t), Options{})
	packages := s.Store().Packages
	ctx := ctxFor(t)
	id := uniqueID("pkg")
	must(t, packages.Create(ctx, id, &domain.Package{ID: id, Status: "Scheduled"}), "create")

	cases := []struct {
		name  string
		fault cosmosdouble.CosmosFault
	}{
		{"throttled past the SDK's retries", cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosThrottle, RetryAfter: 10 * time.Millisecond}},
		{"503", cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosUnavailable}},
		{"connections dropped", cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosDrop}},
		{"connections refused", cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosRefuse}},
		{"503 on the packages container", cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosUnavailable, Container: topology.ContainerPackages}},
	}
	for _, c := range cases {
		double.Fault(t, c.fault)
		began := time.Now()
		_, err := packages.Find(ctx, id)
		mustCode(t, err, domain.EUNAVAILABLE, c.name+": read")
		// What a caller's 503 says: that the store failed, and to retry.
		assert.Equal(t, fmt.Sprintf("the store is unavailable (read packages/%s); retry", id), domain.ErrorMessage(err), c.name)
		t.Logf("%s: read failed after %v", c.name, time.Since(began).Round(time.Millisecond))
		other := uniqueID("pkg")
		err = packages.Create(ctx, other, &domain.Package{ID: other, Status: "Scheduled"})
		mustCode(t, err, domain.EUNAVAILABLE, c.name+": write")
		if c.fault.Container != "" {
			_, err := s.Store().Accounts.Find(ctx, "nobody")
			mustCode(t, err, domain.ENOTFOUND, c.name+": another container is served")
		}
		if c.fault.Kind != cosmosdouble.CosmosRefuse {
			assert.Positive(t, double.FaultState(t).Injected, c.name)
		}
		double.Heal(t)
		got, err := packages.Find(ctx, id)
		must(t, err, c.name+": read after the window")
		assert.Equal(t, id, got.ID)
	}

	// The drone index's first load in an outage: dispatch is told the
	// index is unavailable, and it loads in the background once Cosmos DB
	// answers again.
	fleet := e.open(t, e.client, e.freshDB(t), Options{}).Store().Fleet
	double.Fault(t, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosUnavailable})
	mustCode(t, fleet.Ready(ctx), domain.EUNAVAILABLE, "the index's first load in an outage")
	mustCode(t, fleet.Ready(ctx), domain.EUNAVAILABLE, "the index while its load is retried")
	double.Heal(t)
	porttest.Eventually(t, "the index to load once the outage ends", func() error { return fleet.Ready(ctx) })

	// A throttle the SDK's own retries outlast: it waits x-ms-retry-after-ms
	// between tries, and the window ends before its tries do.
	double.Fault(t, cosmosdouble.CosmosFault{Kind: cosmosdouble.CosmosThrottle, For: 300 * time.Millisecond, RetryAfter: 100 * time.Millisecond})
	got, err := packages.Find(ctx, id)
	require.NoError(t, err, "the SDK rode out a short throttle")
	assert.Equal(t, id, got.ID)
}
