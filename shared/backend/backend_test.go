package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/cosmos"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/backend"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone/standalonetest"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// patience bounds the waits for the chain: only a hang reaches it.
const patience = 2 * time.Minute

// TestCosmosOperationsPerDelivery runs the chain on the Azure adapters
// against the local doubles and counts the Cosmos DB requests the chain
// makes per delivery, through an azcore pipeline policy. The figure is
// quoted in docs/data-layout.md; change both together.
func TestCosmosOperationsPerDelivery(t *testing.T) {
	counter := &cosmos.CountingPolicy{}
	app := serveOnAzureDoubles(t, counter)
	sb := app.sb
	key := ""
	do := func(method, path string, body any) (int, []byte) { return call(t, app.base, key, method, path, body) }
	key = backendOperatorKey
	const n = 10
	for i := range n {
		status, body := do("PUT", fmt.Sprintf("/api/drones/az-%02d", i), map[string]any{
			"location":     domain.Location{Latitude: 47.6 + 0.001*float64(i), Longitude: -122.33},
			"maxPayloadKg": 5, "maxPackageSize": "Large", "rangeKm": 40, "cruiseSpeedMps": 15})
		require.Equal(t, http.StatusCreated, status, string(body))
	}

	status, body := do("POST", "/api/accounts", map[string]any{"name": "Ops", "contactEmail": "ops@example.com"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var acct struct{ APIKey string }
	require.NoError(t, json.Unmarshal(body, &acct))
	key = acct.APIKey

	before := counter.Snapshot()
	for i := range n {
		status, body := do("POST", "/api/deliveryrequests", map[string]any{
			"deliveryId":      fmt.Sprintf("az-%d", i),
			"pickupLocation":  domain.Location{Latitude: 47.6 + 0.001*float64(i), Longitude: -122.3301},
			"dropOffLocation": domain.Location{Latitude: 47.61, Longitude: -122.33},
			"packageInfo":     map[string]any{"size": "Small", "weight": 1}})
		require.Equal(t, http.StatusAccepted, status, string(body))
	}
	// Wait for the chain: every delivery Scheduled, read through the API
	// (reads the chain did not make, counted and taken off), then every
	// queue empty, read from the Service Bus double (no Cosmos read). A step
	// publishes its outputs before it completes its message, so a queue
	// read empty after the queue before it means the work has moved on or
	// is done, and the last, the notifications queue, read empty means the
	// notice step has made its reads.
	polls := 0
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(patience)
	for i := 0; i < n; {
		require.True(t, time.Now().Before(deadline), "the chain did not finish on the Azure adapters")
		status, body := do("GET", fmt.Sprintf("/api/deliveries/az-%d/status", i), nil)
		polls++
		require.Equal(t, http.StatusOK, status)
		var st struct{ Stage domain.Stage }
		require.NoError(t, json.Unmarshal(body, &st))
		if st.Stage == domain.StageScheduled {
			i++
			continue
		}
		<-tick.C
	}
	chain := []string{topology.QueueDeliveryRequests, topology.QueueDroneScheduled, topology.QueuePackageUpdated, topology.QueueNotifications}
	for q := 0; q < len(chain); {
		require.True(t, time.Now().Before(deadline), "the chain's queues did not empty")
		if st := sb.Stats(t, chain[q]); st.Active+st.Scheduled == 0 {
			q++
			continue
		}
		<-tick.C
	}
	after := counter.Snapshot()

	ops, background := map[string]int{}, map[string]int{}
	total := 0
	for k, v := range after {
		d := v - before[k]
		switch {
		case d <= 0:
		case k == cosmos.OpQuery || k == cosmos.OpAccount || k == "GET colls" || strings.HasSuffix(k, " feed"):
			// Metadata, and the drone index's change feed reads (its
			// first load and its polls): the process's, not a delivery's.
			background[k] = d
		default:
			ops[k] = d
			total += d
		}
	}
	ops[cosmos.OpRead] -= polls
	total -= polls
	perDelivery := float64(total) / n
	t.Logf("Cosmos DB point operations per delivery through the chain: %.1f (%v per %d deliveries; background requests %v)", perDelivery, ops, n, background)
	// ingest: read the package named after the delivery (these requests
	// leave packageId out: a record of it on another delivery that has not
	// ended refuses the request), create the owner index entry, create the delivery, and count
	// the acceptance in three buckets (account, area, fleet) with one
	// transactional batch each: the marker and the aggregate's increments
	// (docs/data-layout.md); schedule: reserve, claim, record; package:
	// create the package (no read first: CreateFirst), record; ETA:
	// record, move the owner index entry to Scheduled; the notice: read
	// the delivery. The schedule, package and ETA steps
	// start from the versions of the delivery and the drone that their
	// message carries (ports.Versions), which this process wrote, so they
	// read neither; the notice, which acts outside the store, reads. Each
	// delivery here has its own nearest drone, so no race for a drone adds
	// operations. The API key and the account's webhook settings are each
	// read once for all of them and then cached, and the airspace's
	// version is read until its change feed is loaded (once here), then
	// kept from the feed: a tenth of a read each.
	// This test's account and database are new, so the month's first
	// contribution to each bucket adds a batch that creates its aggregate
	// (0.3 each).
	assert.GreaterOrEqual(t, perDelivery, 14.0)
	assert.LessOrEqual(t, perDelivery, 15.0)
	assert.LessOrEqual(t, float64(ops[cosmos.OpRead])/n, 2.5, "point reads per delivery: ingest's of the package, the notice's of the delivery, and a tenth each of the key's, the account's and the airspace's")
	assert.Zero(t, after[cosmos.OpUpsert]-before[cosmos.OpUpsert], "no blind writes")

	// The sizes of the documents a delivery writes, for the request unit
	// estimate in docs/data-layout.md (a write costs more as its document
	// grows). Read outside the counted span.
	client, err := azcosmos.NewClientFromConnectionString(app.cosmosConn, nil)
	require.NoError(t, err)
	sizes := map[string]int{}
	read := func(container, pk, id string) []byte {
		c, err := client.NewContainer(app.database, container)
		require.NoError(t, err)
		resp, err := c.ReadItem(context.Background(), azcosmos.NewPartitionKeyString(pk), id, nil)
		require.NoError(t, err)
		sizes[container] = len(resp.Value)
		return resp.Value
	}
	var first struct {
		CreatedAt time.Time `json:"createdAt"`
	}
	require.NoError(t, json.Unmarshal(read(topology.ContainerDeliveries, "az-0", "az-0"), &first))
	// The fleet's aggregate of the month the delivery was created in.
	read(topology.ContainerAnalytics, "fleet|"+first.CreatedAt.UTC().Format("2006-01"), "aggregate")
	t.Logf("stored document sizes in bytes: %v", sizes)
	// One analytics batch per bucket, and one more per bucket for the
	// month's first contribution, which creates the aggregate (this test's
	// account and database are new; a run across the turn of a month
	// UTC adds up to three more).
	batches := after[cosmos.OpBatch] - before[cosmos.OpBatch]
	assert.GreaterOrEqual(t, batches, 3*n+3, "one analytics batch per bucket")
	assert.LessOrEqual(t, batches, 3*n+6, "one analytics batch per bucket")
}

const backendOperatorKey = "backend-test-operator-key"

// azureApp is the function app served on the Azure adapters against the
// local doubles.
type azureApp struct {
	base                 string // its URL
	sb                   *servicebusdouble.ServiceBus
	cosmosConn, database string
	store                ports.Store // the backend's, to set up states a race leaves
}

// serveOnAzureDoubles serves the function app on the Cosmos DB and Service
// Bus adapters against the local doubles, with policies in the Cosmos DB
// client's pipeline.
func serveOnAzureDoubles(t *testing.T, policies ...policy.Policy) azureApp {
	t.Helper()
	app := azureApp{cosmosConn: cosmosdouble.StartCosmos(t), sb: servicebusdouble.StartServiceBus(t), database: "ops" + fmt.Sprint(time.Now().UnixNano())}
	env := map[string]string{"CosmosDBConnection": app.cosmosConn, "ServiceBusConnection": app.sb.ConnectionString(), "COSMOS_DATABASE": app.database}
	cfg, err := config.Load(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.True(t, cfg.Azure)
	b, err := backend.Open(context.Background(), cfg, backend.Options{Bootstrap: true, CosmosPolicies: policies})
	require.NoError(t, err)
	// A cleanup, not a defer: the server, stopped at the test's end, stops
	// before the backend under it closes.
	t.Cleanup(func() { b.Close() })
	app.store = b.Store
	app.base = standalonetest.ServeApp(t, "../..", b.Bus, handlers.Deps{Store: b.Store, Clock: platform.Clock{}, IDs: platform.IDs{},
		Log: slog.New(slog.DiscardHandler), Config: handlers.Config{OperatorKey: backendOperatorKey}}, standalone.Options{Workers: 4})
	return app
}

// call sends one request with key and returns its status and body.
func call(t *testing.T, base, key, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// On Cosmos DB, where a delivery and its package are not written in one
// transaction, a request under a deliveryId another account holds is a
// 409 naming deliveryId that books nothing: the package it names stays
// free for its own account's next request.
func TestAReusedIDBooksNoPackageOnCosmos(t *testing.T) {
	base := serveOnAzureDoubles(t).base
	signUp := func(name string) string {
		status, body := call(t, base, "", "POST", "/api/accounts", map[string]any{"name": name, "contactEmail": "ops@example.com"})
		require.Equal(t, http.StatusCreated, status, string(body))
		var acct struct{ APIKey string }
		require.NoError(t, json.Unmarshal(body, &acct))
		return acct.APIKey
	}
	a, b := signUp("A"), signUp("B")
	request := func(id, pkg string) map[string]any {
		return map[string]any{"deliveryId": id, "pickupLocation": domain.Location{Latitude: 47.6, Longitude: -122.33},
			"dropOffLocation": domain.Location{Latitude: 47.61, Longitude: -122.33}, "packageInfo": map[string]any{"packageId": pkg, "size": "Small", "weight": 1}}
	}
	status, body := call(t, base, a, "POST", "/api/deliveryrequests", request("x-1", "p-a"))
	require.Equal(t, http.StatusAccepted, status, string(body))

	status, body = call(t, base, b, "POST", "/api/deliveryrequests", request("x-1", "p-b"))
	require.Equal(t, http.StatusConflict, status, string(body))
	assert.Contains(t, string(body), `"field":"deliveryId"`)
	status, body = call(t, base, b, "GET", "/api/packages/p-b", nil)
	assert.Equal(t, http.StatusNotFound, status, "nothing booked: %s", body)
	status, body = call(t, base, b, "POST", "/api/deliveryrequests", request("y-1", "p-b"))
	assert.Equal(t, http.StatusAccepted, status, "the package is free: %s", body)
}

// TestALostBookingHoldsNoPackageOnCosmos sets up what two requests racing
// under one delivery id leave on Cosmos DB, where the package is booked
// before the delivery is written: the loser's package booked for the
// winner's delivery. That delivery carries a package of its own, so the
// loser's package is free for the next request, whether the winner is
// another account or the same one.
func TestALostBookingHoldsNoPackageOnCosmos(t *testing.T) {
	app := serveOnAzureDoubles(t)
	ctx := context.Background()
	signUp := func(name string) (id, key string) {
		status, body := call(t, app.base, "", "POST", "/api/accounts", map[string]any{"name": name, "contactEmail": "ops@example.com"})
		require.Equal(t, http.StatusCreated, status, string(body))
		var acct struct{ AccountID, APIKey string }
		require.NoError(t, json.Unmarshal(body, &acct))
		require.NotEmpty(t, acct.AccountID)
		return acct.AccountID, acct.APIKey
	}
	aID, a := signUp("A")
	bID, b := signUp("B")
	request := func(id, pkg string) map[string]any {
		return map[string]any{"deliveryId": id, "pickupLocation": domain.Location{Latitude: 47.6, Longitude: -122.33},
			"dropOffLocation": domain.Location{Latitude: 47.61, Longitude: -122.33}, "packageInfo": map[string]any{"packageId": pkg, "size": "Small", "weight": 1}}
	}
	status, body := call(t, app.base, a, "POST", "/api/deliveryrequests", request("x-1", "p-a"))
	require.Equal(t, http.StatusAccepted, status, string(body))

	lost := func(owner, pkg string) {
		now := time.Now().UTC()
		key := domain.PackageKey(owner, pkg)
		_, err := app.store.Packages.Upsert(ctx, key, func(*domain.Package) (*domain.Package, error) {
			return &domain.Package{ID: key, PackageID: pkg, OwnerID: owner, DeliveryID: "x-1", Size: domain.SizeSmall, Weight: 1,
				Status: "Booked", CreatedAt: now, UpdatedAt: now}, nil
		})
		require.NoError(t, err)
	}
	lost(bID, "p-b")
	status, body = call(t, app.base, b, "POST", "/api/deliveryrequests", request("y-1", "p-b"))
	assert.Equal(t, http.StatusAccepted, status, "another account's delivery holds none of B's packages: %s", body)

	lost(aID, "p-a2")
	status, body = call(t, app.base, a, "POST", "/api/deliveryrequests", request("x-2", "p-a2"))
	assert.Equal(t, http.StatusAccepted, status, "x-1 carries p-a, not p-a2: %s", body)
	status, body = call(t, app.base, a, "POST", "/api/deliveryrequests", request("x-3", "p-a"))
	assert.Equal(t, http.StatusConflict, status, "x-1 still holds its own package: %s", body)
	assert.Contains(t, string(body), `"field":"packageInfo.packageId"`)
}
