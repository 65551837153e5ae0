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

// Container is a Cosmos DB container and its partition key path.
type Container struct {
	Name         string
	PartitionKey string
}

// Containers lists every container of the store. Each aggregate is keyed by
// its own id so that every read and write on the hot path is a point
// operation in one logical partition.
var Containers = []Container{
	{Name: ContainerDeliveries, PartitionKey: "/id"},
	{Name: ContainerPackages, PartitionKey: "/id"},
	{Name: ContainerDrones, PartitionKey: "/id"},
}
