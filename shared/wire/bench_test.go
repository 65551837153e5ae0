package wire_test

import (
	"testing"

	"github.com/fabrikam/dronedelivery/shared/wire"
)

// BenchmarkParseEnvelope is what every queue step pays to read its
// message.
func BenchmarkParseEnvelope(b *testing.B) {
	body := []byte(`{"operation":"customer-message","deliveryId":"01a242a988877a199009296180f154d7","correlationId":"01a242a988877a199009296180f154d8","notificationId":"01a242a988877a199009296180f154d7:n1","subscriptionId":"abc123","channel":"sms","attempt":1,"generation":2}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.ParseEnvelope(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseDeliveryRequest is what ingest pays to read a client's
// request: the strict decoder, its shape check and the validation.
func BenchmarkParseDeliveryRequest(b *testing.B) {
	body := []byte(`{"deliveryId":"order-1042","ownerId":"","pickupLocation":{"latitude":47.6101,"longitude":-122.3421},"dropOffLocation":{"latitude":47.6205,"longitude":-122.3493},"pickupTime":"2026-12-04T20:05:36Z","deadline":"2026-12-04T22:05:36Z","expedited":false,"confirmationRequired":"None","packageInfo":{"packageId":"pkg-1042","size":"Small","weight":1.5,"tag":"fragile"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.ParseDeliveryRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
