package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/servicebusdouble"
)

// TestStandaloneChainOnAzureAdapters runs the chain scenario with the binary
// configured for Cosmos DB and Service Bus, reached through the local test
// doubles by connection strings, exactly as it would reach emulators.
func TestStandaloneChainOnAzureAdapters(t *testing.T) { onAzure(t, chainScenario) }

// TestListingOnAzureAdapters runs the listing scenario on Cosmos DB and
// Service Bus, through the local doubles: every page is a query of the
// owner index's partition and point reads.
func TestListingOnAzureAdapters(t *testing.T) { onAzure(t, listingScenario) }

// onEmbedded runs scenario in parallel against an instance of its own on
// the embedded backend, and stops the instance cleanly after it.
func onEmbedded(t *testing.T, scenario func(*testing.T, *proc)) {
	t.Parallel()
	p := startServe(t, t.TempDir())
	scenario(t, p)
	p.stop(t)
}

// onAzure is onEmbedded on the Azure adapters, over the local doubles.
func onAzure(t *testing.T, scenario func(*testing.T, *proc)) {
	t.Parallel()
	p := startOnAzure(t)
	scenario(t, p)
	p.stop(t)
}

// startOnAzure starts the binary on the Cosmos DB and Service Bus adapters,
// over fresh local doubles and a database of its own, with extra settings.
func startOnAzure(t *testing.T, env ...string) *proc {
	t.Helper()
	p, _ := startOnAzureBus(t, env...)
	return p
}

// startOnAzureBus is startOnAzure that also returns the Service Bus double,
// for the test to reach the queues itself.
func startOnAzureBus(t *testing.T, env ...string) (*proc, *servicebusdouble.ServiceBus) {
	t.Helper()
	cosmos := cosmosdouble.StartCosmos(t)
	sb := servicebusdouble.StartServiceBus(t)
	p := startServeEnv(t, t.TempDir(), append([]string{
		"CosmosDBConnection=" + cosmos,
		"ServiceBusConnection=" + sb.ConnectionString(),
		fmt.Sprintf("COSMOS_DATABASE=e2e%d", time.Now().UnixNano()),
		"COSMOS_BOOTSTRAP=true",
	}, env...))
	require.Contains(t, p.logs.String(), `"backend":"Cosmos DB`, "the binary opened the Azure backends")
	return p, sb
}
