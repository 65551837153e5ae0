// Package cosmos implements the store ports over Azure Cosmos DB (azcosmos).
//
// Every aggregate lives in its own container partitioned by its id, so each
// Find, Create and Update is a point operation in one logical partition.
// Beside them, the owner index of deliveries (deliveriesbyowner, partitioned
// by owner) makes listing an owner's deliveries a single-partition query.
// The chain runs no query: a delivery costs point operations only (see
// CountingPolicy for how that is measured); the queries are the fleet's
// List, the listing, and the monthly reports. The drone index that
// NearestAvailable reads follows the drones container's change feed,
// loaded on first use (see fleet).
//
// Throttling (429) is left to the client: azcosmos v1.5.0 builds its
// pipeline with azcore's retry policy, which retries 429 after the server's
// x-ms-retry-after-ms, up to ClientOptions.Retry.MaxRetries (3 by default;
// raise it for production, as the other Cosmos SDKs retry 9 times). A 429
// that outlasts those retries surfaces as EUNAVAILABLE. The SDK's own
// clientRetryPolicy (cosmos_client_retry_policy.go) retries a 503 only in
// another preferred region, and a write only with multiple write locations,
// so with one region a 503 surfaces at once; a refused connection is tried
// three times in the region, 1 s apart, before it surfaces. Both are
// EUNAVAILABLE too: the HTTP layer answers 503 with Retry-After and the
// runtime retries a step later (docs/RELIABILITY.md, TestOutagesAreUnavailable).
package cosmos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// DefaultFeedPoll is how long the drone index waits, after a read of the
// change feed found nothing new, before it asks again: how late a drone
// freed or moved by another process may become dispatchable here. A quiet
// read costs one small request per physical partition of the drones
// container, whatever the fleet's size (docs/azure.md).
const DefaultFeedPoll = time.Second

// Options tunes a Store; the zero value means the defaults.
type Options struct {
	// FeedPoll is the wait between quiet reads of the drone index's
	// change feed (DefaultFeedPoll when zero).
	FeedPoll time.Duration
	// Logger receives the failures of the change feed reads and of the
	// acceptance's analytics (see deliveries.counted), which have
	// no caller to return them to (slog.Default() when nil).
	Logger *slog.Logger
}

// Store is the Cosmos DB backend of ports.Store over one database.
type Store struct {
	deliveries deliveries
	packages   *collection[domain.Package]
	accounts   *collection[domain.Account]
	apiKeys    *collection[domain.APIKey]
	fleet      *fleet

	confirmations *collection[domain.ConfirmationBlob]
	zones         *zones
	analytics     *analytics
	pauses        *pauses
	suppressions  *collection[domain.Suppression]
}

// Open connects to the containers of database without a request: the
// drone index loads when dispatch first needs it (ports.Fleet's Ready).
// The database and containers must exist (see Bootstrap for development
// and tests). ctx is unused and kept for the callers' symmetry with the
// other backends.
func Open(_ context.Context, client *azcosmos.Client, database string, opts Options) (*Store, error) {
	if opts.FeedPoll <= 0 {
		opts.FeedPoll = DefaultFeedPoll
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	db, err := client.NewDatabase(database)
	if err != nil {
		return nil, fmt.Errorf("open cosmos database %s: %w", database, brief(err))
	}
	containers := map[string]*azcosmos.ContainerClient{}
	// Every operation here addresses a document's partition by its id,
	// except in the owner index; a container partitioned otherwise than
	// the adapter expects would answer 400s.
	for name, want := range map[string]string{
		topology.ContainerDeliveries: "/id", topology.ContainerPackages: "/id", topology.ContainerDrones: "/id",
		topology.ContainerAccounts: "/id", topology.ContainerAPIKeys: "/id", topology.ContainerDeliveriesByOwner: "/ownerId",
		topology.ContainerConfirmations: "/id", topology.ContainerAirspace: "/id", topology.ContainerAnalytics: "/bucket", topology.ContainerPauses: "/id",
		topology.ContainerSuppressions: "/id",
	} {
		i := slices.IndexFunc(topology.Containers, func(c topology.Container) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("open cosmos store: topology lists no container %s", name)
		}
		if pk := topology.Containers[i].PartitionKey; pk != want {
			return nil, fmt.Errorf("open cosmos container %s: partition key %s, but this adapter needs %s", name, pk, want)
		}
		if containers[name], err = db.NewContainer(name); err != nil {
			return nil, fmt.Errorf("open cosmos container %s: %w", name, brief(err))
		}
	}
	s := &Store{
		deliveries:    newDeliveries(containers[topology.ContainerDeliveries], containers[topology.ContainerDeliveriesByOwner]),
		packages:      newPackages(containers[topology.ContainerPackages]),
		accounts:      newCollection[domain.Account](containers[topology.ContainerAccounts], topology.ContainerAccounts),
		apiKeys:       newCollection[domain.APIKey](containers[topology.ContainerAPIKeys], topology.ContainerAPIKeys),
		confirmations: newCollection[domain.ConfirmationBlob](containers[topology.ContainerConfirmations], topology.ContainerConfirmations),
		fleet:         newFleet(containers[topology.ContainerDrones], opts.Logger, opts.FeedPoll),
		zones:         newZones(containers[topology.ContainerAirspace], opts.Logger, opts.FeedPoll),
		pauses:        newPauses(containers[topology.ContainerPauses]),
		suppressions:  newCollection[domain.Suppression](containers[topology.ContainerSuppressions], topology.ContainerSuppressions),
	}
	s.analytics = &analytics{c: containers[topology.ContainerAnalytics], deliveries: s.deliveries, log: opts.Logger}
	s.deliveries.analytics = s.analytics
	return s, nil
}

// newPackages returns the packages collection. The update-package step
// upserts a package that is nearly always new (a business's package id,
// once), so its upsert tries the create first: one operation instead of a
// read that misses and a create; a package id used again costs a 409, then
// the read.
func newPackages(c *azcosmos.ContainerClient) *collection[domain.Package] {
	p := newCollection[domain.Package](c, topology.ContainerPackages)
	p.loop.CreateFirst = true
	return p
}

// Store returns the collections as the ports the handlers use.
func (s *Store) Store() ports.Store {
	return ports.Store{Deliveries: s.deliveries, Packages: s.packages, Fleet: s.fleet, Accounts: s.accounts, APIKeys: s.apiKeys,
		Confirmations: s.confirmations, Zones: s.zones, Analytics: s.analytics, Pauses: s.pauses,
		Waiting: waiting{s.deliveries}, Suppressions: s.suppressions}
}

// Close stops following the change feeds and waits for them; the client
// stays open because the caller owns it.
func (s *Store) Close() {
	s.fleet.close()
	s.zones.close()
}

// Bootstrap creates the database and every container of the topology with
// its partition key and default TTL, leaving existing ones alone; in Azure the
// infrastructure templates create them, so only development and tests call it.
func Bootstrap(ctx context.Context, client *azcosmos.Client, database string) error {
	_, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: database}, nil)
	if err != nil && statusOf(err) != http.StatusConflict {
		return unavailable(err, "create database %s", database)
	}
	db, err := client.NewDatabase(database)
	if err != nil {
		return fmt.Errorf("create database %s: %w", database, brief(err))
	}
	for _, c := range topology.Containers {
		props := azcosmos.ContainerProperties{
			ID:                     c.Name,
			PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{c.PartitionKey}},
		}
		if c.DefaultTTL != 0 {
			ttl := int32(c.DefaultTTL)
			props.DefaultTimeToLive = &ttl
		}
		_, err := db.CreateContainer(ctx, props, nil)
		if err != nil && statusOf(err) != http.StatusConflict {
			return unavailable(err, "create container %s/%s", database, c.Name)
		}
	}
	return nil
}

// unavailable is domain.Unavailable with Cosmos DB's answer told in one
// line (brief).
func unavailable(err error, format string, args ...any) *domain.Error {
	return domain.Unavailable(brief(err), format, args...)
}

// brief tells an error answer of Cosmos DB in one line: its status, code
// and sub-status, the request's method and path, the first line of the
// answer's message, and the activity id that Azure support asks for. The
// SDK's own text spells out the request, the status and the whole
// response body, pretty-printed over many lines (azcore v1.23.3,
// internal/exported/response_error.go, ResponseError.Error), which every
// log line of a failing request would carry. The answer stays
// in the chain for errors.As. Only the SDK's error is told so: one the
// adapter wrapped already (a *domain.Error, through unavailable) is told
// in one line and keeps what it says.
func brief(err error) error {
	var de *domain.Error
	var be *briefError
	var re *azcore.ResponseError
	if errors.As(err, &de) || errors.As(err, &be) || !errors.As(err, &re) {
		return err
	}
	return &briefError{re: re, err: err}
}

type briefError struct {
	re  *azcore.ResponseError
	err error
}

func (e *briefError) Error() string {
	var b strings.Builder
	status := strconv.Itoa(e.re.StatusCode)
	if r := e.re.RawResponse; r != nil && r.Status != "" {
		status = r.Status
	}
	b.WriteString("Cosmos DB answered " + status)
	// Without a code of its own, the SDK names the status line instead.
	if e.re.ErrorCode != "" && e.re.ErrorCode != status {
		b.WriteString(" " + e.re.ErrorCode)
	}
	if sub := subStatusOf(e.re); sub != "" && sub != "0" {
		b.WriteString(" (sub-status " + sub + ")")
	}
	if r := e.re.RawResponse; r != nil {
		if r.Request != nil {
			fmt.Fprintf(&b, " to %s %s", r.Request.Method, r.Request.URL.EscapedPath())
		}
		if msg := answerMessage(e.re); msg != "" {
			b.WriteString(": " + strconv.Quote(msg))
		}
		if id := r.Header.Get("x-ms-activity-id"); id != "" {
			b.WriteString(", activity id " + id)
		}
	}
	return b.String()
}

func (e *briefError) Unwrap() error { return e.err }

// answerMessage is the first line of the message in an error answer's
// body ({"code": …, "message": …}), which names what is missing or
// wrong, cut at 200 bytes; Cosmos DB appends request statistics on the
// lines after it.
func answerMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	body, err := azruntime.Payload(re.RawResponse)
	if err != nil {
		return ""
	}
	var answer struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &answer) != nil {
		return ""
	}
	msg, _, _ := strings.Cut(answer.Message, "\n")
	msg = strings.TrimSpace(msg)
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "…"
	}
	return msg
}

// statusOf returns the HTTP status of a Cosmos error response, or 0 when err
// did not come from a response (a transport failure, a cancelled context).
func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// subStatusOf returns the x-ms-substatus of a Cosmos error response, which
// tells a missing document (0) from a missing container (1003) and a query
// the gateway cannot serve (1004).
func subStatusOf(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		return re.RawResponse.Header.Get("x-ms-substatus")
	}
	return ""
}
