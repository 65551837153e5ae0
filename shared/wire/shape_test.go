package wire_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// hostileShape is a body whose one long name wraps a long array: a walk
// that spelt out each element's path would copy the name once per element.
func hostileShape(n int) []byte {
	return []byte(`{"` + strings.Repeat("k", n) + `":[` + strings.TrimSuffix(strings.Repeat("0,", n), ",") + `]}`)
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeStrictWorkGrowsWithTheBody: refusing a body costs memory in
// proportion to its size, not to its size squared (the 120 KB body here
// allocated 1.6 GB when every element's path was spelt out as it went).
// Bytes allocated are counted, not time, so the test does not depend on
// the machine's speed.
func TestDecodeStrictWorkGrowsWithTheBody(t *testing.T) {
	var v struct{}
	small, large := hostileShape(20_000), hostileShape(40_000)
	a := allocatedBy(func() { require.Error(t, wire.DecodeStrict(small, &v)) })
	b := allocatedBy(func() { require.Error(t, wire.DecodeStrict(large, &v)) })
	assert.Less(t, float64(b), 3*float64(a), "twice the body allocated %d bytes against %d", b, a)
	assert.Less(t, b, uint64(40*len(large)), "allocated %d bytes for a body of %d", b, len(large))
}

// TestSmallDocumentsRefuseLargeBodies: a body of one of the API's small
// documents above MaxJSONBytes is refused as too large before it is
// parsed, naming the body; the large documents take more.
func TestSmallDocumentsRefuseLargeBodies(t *testing.T) {
	big := hostileShape(wire.MaxJSONBytes / 2)
	_, err := wire.ParseDeliveryRequest(big)
	require.Error(t, err)
	assert.Equal(t, domain.ETOOLARGE, domain.ErrorCode(err))
	assert.Equal(t, "body", domain.ErrorField(err))
	var v struct{}
	err = wire.DecodeStrictLarge(big, &v)
	require.Error(t, err)
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "parsed, and refused for what it holds")
}

// TestDeliveryIDMustNotNameTheSummary: /api/deliveries/summary is the
// summary in any case, so no delivery may take that id.
func TestDeliveryIDMustNotNameTheSummary(t *testing.T) {
	for _, id := range []string{"summary", "Summary", "SUMMARY"} {
		_, err := wire.ParseDeliveryRequest([]byte(`{"deliveryId":"` + id + `","pickupLocation":{"latitude":47.6,"longitude":-122.3},"dropOffLocation":{"latitude":47.61,"longitude":-122.31},"packageInfo":{"size":"Small","weight":1}}`))
		require.Error(t, err, id)
		assert.Equal(t, "deliveryId", domain.ErrorField(err), id)
	}
}
