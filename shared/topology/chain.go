package topology

// Step is one function of the chain: the queue it is triggered by ("" for
// an HTTP function) and the queues its results may go to. The table is the
// one place that says how the steps connect; the functions' bindings must
// agree with Reads (functionapp checks them at start-up), and the queue
// middleware refuses an output to a queue a step does not declare.
type Step struct {
	Function string
	Reads    string
	Emits    []string
}

// Chain lists every function that reads or writes a queue.
var Chain = []Step{
	{Function: "IngestDelivery", Emits: []string{QueueDeliveryRequests}},
	{Function: "CancelDelivery", Emits: []string{QueueDeliveryRequests, QueueNotifications}},
	{Function: "RescheduleDelivery", Emits: []string{QueueDeliveryRequests}},
	// A retry when no drone is free goes back to the queue it came from.
	{Function: "ScheduleDrone", Reads: QueueDeliveryRequests, Emits: []string{QueueDroneScheduled, QueueDeliveryRequests, QueueNotifications}},
	{Function: "UpdatePackage", Reads: QueueDroneScheduled, Emits: []string{QueuePackageUpdated, QueueNotifications}},
	{Function: "ComputeEta", Reads: QueuePackageUpdated, Emits: []string{QueueNotifications}},
	{Function: "PostTelemetry", Emits: []string{QueueDroneTelemetry}},
	{Function: "TrackDrone", Reads: QueueDroneTelemetry, Emits: []string{QueueNotifications}},
	{Function: "SendNotification", Reads: QueueNotifications, Emits: []string{QueueNotifications}},
}

// StepOf returns the chain's entry for a function.
func StepOf(function string) (Step, bool) {
	for _, s := range Chain {
		if s.Function == function {
			return s, true
		}
	}
	return Step{}, false
}
