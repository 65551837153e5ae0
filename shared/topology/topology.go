// Package topology names the queues and containers that code, bindings and
// infrastructure share, so that each name is written once.
package topology

// The queues that chain the steps of a delivery.
const (
	QueueDeliveryRequests = "delivery-requests" // ingest, cancel, reschedule → schedule drone
	QueueDroneScheduled   = "drone-scheduled"   // schedule drone → update package
	QueuePackageUpdated   = "package-updated"   // update package → compute ETA
)

// Queues lists every queue the functions use.
var Queues = []string{QueueDeliveryRequests, QueueDroneScheduled, QueuePackageUpdated}

// MaxDeliveryCount is how many times a message is delivered before the bus
// dead-letters it.
const MaxDeliveryCount = 10

// The document collections (Cosmos DB containers) of the store.
const (
	ContainerDeliveries = "deliveries"
	ContainerPackages   = "packages"
	ContainerDrones     = "drones"
)
