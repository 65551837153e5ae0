package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/cosmos"
	"github.com/fabrikam/dronedelivery/shared/adapters/platform"
	"github.com/fabrikam/dronedelivery/shared/backend"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/functionapp/standalone"
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
	cosmosConn := cosmosdouble.StartCosmos(t)
	sb := servicebusdouble.StartServiceBus(t)
	env := map[string]string{"CosmosDBConnection": cosmosConn, "ServiceBusConnection": sb.ConnectionString(), "COSMOS_DATABASE": "ops" + fmt.Sprint(time.Now().UnixNano())}
	cfg, err := config.Load(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.True(t, cfg.Azure)

	counter := &cosmos.CountingPolicy{}
	b, err := backend.Open(context.Background(), cfg, backend.Options{Bootstrap: true, CosmosPolicies: []policy.Policy{counter}})
	require.NoError(t, err)
	defer b.Close()

	log := slog.New(slog.DiscardHandler)
	const operatorKey = "backend-test-operator-key"
	h := handlers.New(handlers.Deps{Store: b.Store, Bus: b.Bus, Clock: platform.Clock{}, IDs: platform.IDs{}, Log: log,
		Config: handlers.Config{OperatorKey: operatorKey}})
	fns, err := functionapp.LoadFunctions(os.DirFS("../.."), "functions")
	require.NoError(t, err)
	srv, err := standalone.New(h.Registry(), fns, b.Bus, log, standalone.Options{Workers: 4})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()

	key := ""
	do := func(method, path string, body any) (int, []byte) {
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
	key = operatorKey
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
	// ingest: create the owner index entry, create the delivery; schedule:
	// read, reserve, claim, record; package: read, create package, record;
	// ETA: read, read drone, record, move the owner index entry to
	// Scheduled; the notice: read delivery, read account; the airspace's
	// version, read by ingest's feasibility check and twice by dispatch
	// (the choice and the fair-share ranking). Each delivery
	// here has its own nearest drone, so no race for a drone adds
	// operations. The API key is read once for all of them and then
	// cached: a tenth of a read each. The analytics count the acceptance
	// in three buckets (account, area, fleet): an aggregate read and a
	// transactional batch each (docs/data-layout.md).
	assert.GreaterOrEqual(t, perDelivery, 19.0)
	assert.LessOrEqual(t, perDelivery, 26.0)
	assert.Zero(t, after[cosmos.OpUpsert]-before[cosmos.OpUpsert], "no blind writes")
	assert.Equal(t, 3*n, after[cosmos.OpBatch]-before[cosmos.OpBatch], "one analytics batch per bucket")
}
