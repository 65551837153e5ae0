package testdoubles

import (
	"encoding/base64"
	"fmt"
	"testing"
)

// CosmosKey is the account key the Cosmos DB double is reached with; the
// double checks no keys, but the SDK insists on decoding one as base64.
var CosmosKey = base64.StdEncoding.EncodeToString([]byte("dronedelivery cosmos test double, no secret"))

// StartCosmos starts the Cosmos DB double (cosmos.js) for the test's lifetime
// and returns a connection string for azcosmos.NewClientFromConnectionString,
// ending at the key because the SDK's parser folds any later pair into it.
func StartCosmos(t testing.TB) (connectionString string) {
	t.Helper()
	p := Start(t, "cosmos.js")
	return fmt.Sprintf("AccountEndpoint=http://%s/;AccountKey=%s;", p.Addr(), CosmosKey)
}
