// Package topology names the queues and containers that code, bindings and
// infrastructure share. The one source is topology.json beside this file:
// infra/main.bicep reads it with loadJsonContent and this package embeds it,
// so a queue or container is declared once for Go and for Azure alike.
package topology

import (
	"bytes"
	_ "embed" // topology.json is compiled in so the binary needs no files beside it
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// raw is topology.json as shipped; Bicep reads the same bytes.
//
//go:embed topology.json
var raw []byte

// The queues that chain the steps of a delivery. Go constants cannot be read
// from a file, so these repeat names from topology.json; the package tests
// fail unless the two sets are equal.
const (
	QueueDeliveryRequests = "delivery-requests" // ingest, cancel, reschedule → schedule drone
	QueueDroneScheduled   = "drone-scheduled"   // schedule drone → update package
	QueuePackageUpdated   = "package-updated"   // update package → compute ETA
	QueueDroneTelemetry   = "drone-telemetry"   // telemetry report → track (stage, ETA, drone freed)
	QueueNotifications    = "notifications"     // a step's customer notification → webhook delivery
	QueueCustomerMessages = "customer-messages" // one milestone for one subscription → e-mail or SMS
)

// MaxDeliveryCount is how many times a message is delivered before the bus
// dead-letters it. It stays a constant because the embedded bus applies one
// count to every queue; the package tests hold every queue in topology.json
// to it, so local runs dead-letter exactly when Service Bus would.
const MaxDeliveryCount = 10

// The document collections (Cosmos DB containers) of the store, repeated from
// topology.json for the same reason as the queue names.
const (
	ContainerDeliveries = "deliveries"
	ContainerPackages   = "packages"
	ContainerDrones     = "drones"
	ContainerAccounts   = "accounts"
	ContainerAPIKeys    = "apikeys" // keyed by key prefix: authentication is a point read
	// ContainerDeliveriesByOwner is the owner index of deliveries: one small
	// entry per delivery, partitioned by owner, so that listing an owner's
	// deliveries is a single-partition query.
	ContainerDeliveriesByOwner = "deliveriesbyowner"
	// ContainerConfirmations holds the blobs of proofs of delivery, which
	// only a request for the proof reads.
	ContainerConfirmations = "confirmations"
	// ContainerAirspace holds the operator's service areas and no-fly
	// zones, and the version document every write of one of them changes.
	ContainerAirspace = "airspace"
	// ContainerAnalytics holds the running totals of deliveries per bucket
	// (an account, a service area, the fleet) and month, partitioned by
	// bucket and month, each partition with the markers of the
	// contributions added to it.
	ContainerAnalytics = "analytics"
	// ContainerPauses holds the operator's service pauses.
	ContainerPauses = "pauses"
	// ContainerSuppressions holds the addresses whose owners asked a
	// business for no more messages, keyed by account and a hash of the
	// address (domain.SuppressionKey).
	ContainerSuppressions = "suppressions"
)

// Queue is one Service Bus queue as topology.json declares it; the durations
// are ISO 8601 strings because that is what the Service Bus ARM API takes.
type Queue struct {
	Name                                string `json:"name"`
	MaxDeliveryCount                    int    `json:"maxDeliveryCount"`
	LockDuration                        string `json:"lockDuration"`
	DuplicateDetectionHistoryTimeWindow string `json:"duplicateDetectionHistoryTimeWindow"`
}

// Container is a Cosmos DB container, its partition key path and its
// optional default time to live.
type Container struct {
	Name         string
	PartitionKey string
	// DefaultTTL is the container's defaultTtl in seconds: 0 when the file
	// declares none (items never expire), -1 for "on, but only items with their
	// own ttl expire", otherwise the lifetime of every item.
	DefaultTTL int
}

// Topology is the whole of topology.json.
type Topology struct {
	Queues     []Queue
	Containers []Container
}

// Spec is the parsed topology.json this binary was built with.
var Spec = mustParse(raw)

// Queues lists every queue the functions use, in file order.
var Queues = queueNames(Spec.Queues)

// Containers lists every container of the store with its partition key, in
// file order; each aggregate has its own so that its hot-path reads and
// writes are point operations in one logical partition.
var Containers = append([]Container(nil), Spec.Containers...)

// JSON returns a copy of the embedded topology.json, for tools that compare
// other files with it.
func JSON() []byte { return bytes.Clone(raw) }

// QueueSpec returns the declared settings of the named queue.
func QueueSpec(name string) (Queue, bool) {
	for _, q := range Spec.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// file mirrors topology.json; defaultTtl is a pointer so that an explicit 0,
// which Cosmos DB rejects, is told apart from an absent value.
type file struct {
	Queues     []Queue `json:"queues"`
	Containers []struct {
		Name         string `json:"name"`
		PartitionKey string `json:"partitionKey"`
		DefaultTTL   *int   `json:"defaultTtl"`
	} `json:"containers"`
}

// The limits are Service Bus's and Cosmos DB's own, checked here so that a bad
// edit fails `go test` rather than a deployment.
var (
	queueName     = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,258}[a-z0-9]$`)
	containerName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,254}$`)
	keyPath       = regexp.MustCompile(`^(/[A-Za-z0-9_]+)+$`)
)

// Parse decodes and validates a topology file; every problem it reports
// names the queue or container at fault.
func Parse(b []byte) (Topology, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Topology{}, fmt.Errorf("topology.json: %w", err)
	}
	var errs []error
	if len(f.Queues) == 0 {
		errs = append(errs, errors.New("topology.json declares no queues"))
	}
	if len(f.Containers) == 0 {
		errs = append(errs, errors.New("topology.json declares no containers"))
	}
	t := Topology{Queues: f.Queues}
	seen := map[string]bool{}
	for _, q := range f.Queues {
		errs = append(errs, checkName("queue", q.Name, queueName, "2-260 lowercase letters, digits, '.' or '-'", seen)...)
		if q.MaxDeliveryCount < 1 {
			errs = append(errs, fmt.Errorf("queue %q: maxDeliveryCount %d must be at least 1", q.Name, q.MaxDeliveryCount))
		}
		if err := within(q.LockDuration, 5*time.Second, 5*time.Minute); err != nil {
			errs = append(errs, fmt.Errorf("queue %q: lockDuration: %w", q.Name, err))
		}
		if err := within(q.DuplicateDetectionHistoryTimeWindow, 20*time.Second, 7*24*time.Hour); err != nil {
			errs = append(errs, fmt.Errorf("queue %q: duplicateDetectionHistoryTimeWindow: %w", q.Name, err))
		}
	}
	seen = map[string]bool{}
	for _, c := range f.Containers {
		errs = append(errs, checkName("container", c.Name, containerName, "lowercase letters, digits or '-'", seen)...)
		if !keyPath.MatchString(c.PartitionKey) {
			errs = append(errs, fmt.Errorf("container %q: partitionKey %q must be one path such as /id", c.Name, c.PartitionKey))
		}
		ttl := 0
		if c.DefaultTTL != nil {
			ttl = *c.DefaultTTL
			if ttl == 0 || ttl < -1 {
				errs = append(errs, fmt.Errorf("container %q: defaultTtl %d must be -1 or a positive number of seconds (omit it for no expiry)", c.Name, ttl))
			}
		}
		t.Containers = append(t.Containers, Container{Name: c.Name, PartitionKey: c.PartitionKey, DefaultTTL: ttl})
	}
	return t, errors.Join(errs...)
}

// checkName reports what is wrong with the name of a queue or container
// (kind): it must match re, which rule says in words, and must not be in
// seen, the names declared before it, to which it is added.
func checkName(kind, name string, re *regexp.Regexp, rule string, seen map[string]bool) []error {
	var errs []error
	if !re.MatchString(name) {
		errs = append(errs, fmt.Errorf("%s %q: name must be %s", kind, name, rule))
	}
	if seen[name] {
		errs = append(errs, fmt.Errorf("%s %q is declared twice", kind, name))
	}
	seen[name] = true
	return errs
}

func within(iso string, lo, hi time.Duration) error {
	d, err := ParseDuration(iso)
	if err != nil {
		return err
	}
	if d < lo || d > hi {
		return fmt.Errorf("%s is outside %v..%v", iso, lo, hi)
	}
	return nil
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// ParseDuration reads the ISO 8601 durations topology.json uses, such as
// PT1M or P1DT12H. Years and months are refused because their length varies.
func ParseDuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || s[len(s)-1] == 'T' {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration of days, hours, minutes and seconds (e.g. PT1M)", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute} {
		if m[i+1] != "" {
			n, err := strconv.ParseInt(m[i+1], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("%q: %w", s, err)
			}
			d += time.Duration(n) * unit
		}
	}
	if m[4] != "" {
		sec, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", s, err)
		}
		d += time.Duration(sec * float64(time.Second))
	}
	return d, nil
}

func mustParse(b []byte) Topology {
	t, err := Parse(b)
	if err != nil {
		// The file is compiled in and checked by the package tests, so this
		// only fires for a build that skipped them.
		panic(err)
	}
	return t
}

func queueNames(qs []Queue) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = q.Name
	}
	return out
}
