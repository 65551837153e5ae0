package topology

// Step is one function of the chain: the queue it is triggered by ("" for
// an HTTP function) and the queues its results may go to. The table is the
// one place that says how the steps connect: every runtime checks at
// start-up that the functions' bindings read the queues Reads names
// (functionapp.Registry.Check, through handlers.Registry), and the queue
// middleware (functionapp.EmitsOnly) refuses a queue step's output to a
// queue it does not declare; what any function publishes itself, an HTTP
// function's messages included, is checked too (ports.CheckEmits, through
// functionapp.EmitsOnly and functionapp.EmitsOnlyHTTP): the handlers log
// such a send as an error, which fails their tests.
type Step struct {
	Function string
	Reads    string
	Emits    []string
}

// Chain lists every function that reads or writes a queue, but for the
// operator's ReplayDeadLetter, which puts a dead-lettered message back on
// the queue it came from, whichever that is. A step that
// records a milestone emits it twice over: once to notifications (the
// business's webhook) and once per subscription and channel to
// customer-messages (the customers' e-mail and SMS), so that a slow or
// failing webhook never holds up a customer's message, nor the reverse.
var Chain = []Step{
	{Function: "IngestDelivery", Emits: []string{QueueDeliveryRequests}},
	// A cancel whose messages could not be queued releases the drone
	// itself, and a drone that goes to charge gets its charge check.
	{Function: "CancelDelivery", Emits: []string{QueueDeliveryRequests, QueueNotifications, QueueCustomerMessages, QueueDroneTelemetry}},
	{Function: "RescheduleDelivery", Emits: []string{QueueDeliveryRequests}},
	// A retry when no drone is free goes back to the queue it came from.
	{Function: "ScheduleDrone", Reads: QueueDeliveryRequests, Emits: []string{QueueDroneScheduled, QueueDeliveryRequests, QueueNotifications, QueueCustomerMessages, QueueDroneTelemetry}},
	{Function: "PutDrone", Emits: []string{QueueDroneTelemetry}},
	// The operator's actions hand deliveries on through dispatch and tell
	// their customers.
	// A drone's action that takes a delivery off it is finished by the
	// tracking step too (wire.OpDroneAction), should the call stop halfway.
	{Function: "DroneAction", Emits: []string{QueueDeliveryRequests, QueueNotifications, QueueCustomerMessages, QueueDroneTelemetry}},
	{Function: "DeliveryAction", Emits: []string{QueueDeliveryRequests, QueueNotifications, QueueCustomerMessages}},
	// A package that cannot be recorded fails the delivery and releases
	// its drone, which may go to charge: its charge check.
	{Function: "UpdatePackage", Reads: QueueDroneScheduled, Emits: []string{QueuePackageUpdated, QueueNotifications, QueueCustomerMessages, QueueDroneTelemetry}},
	// A delivery whose drone flew it all before this step ran (the step's
	// message held up by an outage) ends here: its drone is freed, which
	// wakes a delivery waiting for one, or sent to charge, which schedules
	// the charge check on the telemetry queue.
	{Function: "ComputeEta", Reads: QueuePackageUpdated, Emits: []string{QueueNotifications, QueueCustomerMessages, QueueDeliveryRequests, QueueDroneTelemetry}},
	{Function: "PostTelemetry", Emits: []string{QueueDroneTelemetry}},
	// A pause put or lifted sends the waiting deliveries whose hold it
	// changes to dispatch.
	{Function: "PutPause", Emits: []string{QueueDeliveryRequests}},
	{Function: "DeletePause", Emits: []string{QueueDeliveryRequests}},
	// A drone that goes to charge schedules the check that returns it to
	// service (wire.OpChargeCheck) on the queue the tracking step reads.
	{Function: "TrackDrone", Reads: QueueDroneTelemetry, Emits: []string{QueueNotifications, QueueCustomerMessages, QueueDroneTelemetry, QueueDeliveryRequests}},
	{Function: "SendNotification", Reads: QueueNotifications, Emits: []string{QueueNotifications}},
	// A failed send is tried again through its own queue.
	{Function: "SendCustomerMessage", Reads: QueueCustomerMessages, Emits: []string{QueueCustomerMessages}},
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
