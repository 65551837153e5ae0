// Package ports names what the handlers need from the outside world: a store
// per aggregate, a message bus, a clock and an id source. Adapters implement
// each port for the embedded backend and for Azure; the contract suites in
// porttest hold every implementation to the same behaviour.
package ports

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// ErrSkip, returned by an update function, ends the update without writing:
// the stored document is returned unchanged. Steps use it to stay idempotent.
var ErrSkip = domain.ErrNoChange

// Collection stores documents of one aggregate by id, with optimistic
// concurrency: every write of an existing document is conditional on the
// version that was read.
type Collection[T any] interface {
	// Find returns the document, or ENOTFOUND.
	Find(ctx context.Context, id string) (*T, error)
	// Create stores a new document, or returns ECONFLICT if the id exists.
	Create(ctx context.Context, id string, v *T) error
	// Update reads the document, applies fn and writes the result if nobody
	// wrote in between, re-reading and re-applying fn after a lost race. It
	// returns ENOTFOUND for a missing document; an error from fn aborts the
	// update and is returned as is, except ErrSkip (see there).
	Update(ctx context.Context, id string, fn func(*T) error) (*T, error)
	// Upsert is Update that also creates: fn receives nil when the document
	// does not exist and returns the document to store.
	Upsert(ctx context.Context, id string, fn func(cur *T) (*T, error)) (*T, error)
}

// Deliveries stores deliveries, keyed by delivery id.
type Deliveries interface {
	Collection[domain.Delivery]
	// ListByOwner returns up to limit of the owner's deliveries created in
	// [from, to), oldest first. It is for reports, not for the hot path: in
	// Cosmos DB it is a cross-partition query.
	ListByOwner(ctx context.Context, ownerID string, from, to time.Time, limit int) ([]*domain.Delivery, error)
	// PageByOwner returns one page of the owner's deliveries that match f,
	// newest first (by creation time, then by id, both descending), read
	// through a per-owner index so that a page costs one indexed range
	// read (SQLite) or one single-partition query and a point read per
	// delivery (Cosmos DB), however many deliveries other owners have.
	// Every write of a delivery keeps its index entry current: in the same
	// transaction on SQLite; on Cosmos DB right after it, and a write of
	// the entry that failed is mended by the retry (docs/data-layout.md).
	// The page is never longer than f.Limit; Next is set when more may
	// follow.
	PageByOwner(ctx context.Context, f DeliveryFilter) (DeliveryPage, error)
}

// DeliveryFilter chooses the deliveries of one listing page.
type DeliveryFilter struct {
	OwnerID string
	// Stage, when not empty, keeps only the deliveries now in that stage.
	Stage domain.Stage
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound the creation
	// time; a zero value leaves that side open.
	CreatedFrom, CreatedTo time.Time
	// After, when set, continues a listing after the position where its
	// previous page ended: only deliveries after it in the listing's
	// order (older, or as old with a smaller id) are returned.
	After *DeliveryPosition
	// Limit is the most deliveries the page holds; it must be positive.
	Limit int
}

// DeliveryPosition is a place in an owner's listing: the creation time and
// id of a delivery, which together order the listing.
type DeliveryPosition struct {
	CreatedAt time.Time
	ID        string
}

// Before reports whether a delivery created at createdAt with id id comes
// after p in a listing, which runs newest first.
func (p DeliveryPosition) Before(createdAt time.Time, id string) bool {
	if !createdAt.Equal(p.CreatedAt) {
		return createdAt.Before(p.CreatedAt)
	}
	return id < p.ID
}

// DeliveryPage is one page of a listing.
type DeliveryPage struct {
	Deliveries []*domain.Delivery
	// Next is where the following page starts (DeliveryFilter.After); nil
	// when the listing has ended. A page may hold fewer than Limit
	// deliveries and still have a Next.
	Next *DeliveryPosition
}

// WaitingDeliveries lists the deliveries of every account that wait for a
// drone (domain.Delivery.Waiting): accepted or rescheduled and not yet
// assigned, held by a pause, or booked. It is the operator's view, not a
// hot path.
type WaitingDeliveries interface {
	// PageWaiting returns one page of the waiting deliveries, newest first
	// (by creation time, then id, both descending) or, with f.Oldest,
	// oldest first. The page is never longer than f.Limit; it may be
	// shorter and still have a Next, since an implementation reads a
	// bounded number of candidates per page and keeps those that wait.
	PageWaiting(ctx context.Context, f WaitingFilter) (DeliveryPage, error)
}

// WaitingFilter chooses one page of waiting deliveries.
type WaitingFilter struct {
	// Oldest lists the oldest first.
	Oldest bool
	// After continues a listing after the position where its previous
	// page ended, in the listing's order.
	After *DeliveryPosition
	// Limit is the most deliveries the page holds; it must be positive.
	Limit int
}

// Analytics keeps the running totals of deliveries per bucket (an account,
// a service area, the fleet: domain.BucketKey) and month, with a bucket per
// day. The store of deliveries maintains them as it writes deliveries:
// every write adds the delivery's contributions (domain.Contributions) not
// added before, each exactly once, keyed by the delivery and the stage;
// in the transaction of the write on SQLite, right after it on Cosmos DB,
// where a skipped update adds them again and the keys make that harmless.
type Analytics interface {
	// Month returns one bucket's month, whose first instant is month: a
	// point read, whatever the number of deliveries. A month nothing was
	// counted in is returned empty.
	Month(ctx context.Context, bucket string, month time.Time) (*domain.MonthFigures, error)
	// Derive computes every bucket of month from the deliveries accepted
	// in it, without writing: for repairs and checks, not the hot path.
	Derive(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error)
	// Reaggregate replaces the maintained buckets of month with those
	// Derive computes and marks the deliveries' contributions as added,
	// so that their later transitions add only what is new. It returns
	// the buckets written.
	Reaggregate(ctx context.Context, month time.Time) (map[string]*domain.MonthFigures, error)
}

// Packages stores packages, keyed by package id.
type Packages = Collection[domain.Package]

// Accounts stores business accounts, keyed by account id.
type Accounts = Collection[domain.Account]

// APIKeys stores the hashed API keys, keyed by key prefix, so that
// authenticating a request is one point read.
type APIKeys interface {
	Collection[domain.APIKey]
	// Delete removes the key stored under prefix id, or returns
	// ENOTFOUND: an account forgets its long-revoked keys.
	Delete(ctx context.Context, id string) error
}

// ConfirmationBlobs stores the blobs of proofs of delivery, keyed by
// domain.ConfirmationBlobID, apart from the deliveries that name them.
type ConfirmationBlobs interface {
	Collection[domain.ConfirmationBlob]
	// Delete removes the blob stored under id, or returns ENOTFOUND: the
	// blob of a proof that lost a race to another.
	Delete(ctx context.Context, id string) error
}

// Fleet stores drones and finds the nearest available ones.
type Fleet interface {
	Collection[domain.Drone]
	// List returns up to limit drones ordered by id, after the id cursor
	// after, with the given status ("" for any).
	List(ctx context.Context, status domain.DroneStatus, after string, limit int) ([]*domain.Drone, error)
	// NearestAvailable yields Available drones with their great-circle
	// distance in km from loc, nearest first. It reads an index that may
	// trail the store for a moment, so a caller must re-check a drone in
	// Update before relying on it. It yields nothing when the index cannot
	// be read; call Ready first to tell that apart from an empty fleet.
	NearestAvailable(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64]
	// NearestAwaitingTakeoff yields the drones claimed for a delivery
	// that have not reported since (domain.Drone.AwaitsTakeoff) with
	// their great-circle distance in km from loc, nearest first: the
	// drones an expedited delivery may take (the preemption rule). Like
	// NearestAvailable it reads an index that may trail the store.
	NearestAwaitingTakeoff(ctx context.Context, loc domain.Location) iter.Seq2[*domain.Drone, float64]
	// Ready returns once NearestAvailable can read the index, which an
	// implementation may load on first use; it returns EUNAVAILABLE when
	// the index cannot be loaded now.
	Ready(ctx context.Context) error
}

// Airspace gives the handlers the airspace in force: the service areas and
// no-fly zones the operator has defined. A change made through any process
// must show in the next call of every process, so an implementation may
// cache only what it can check is current.
type Airspace interface {
	// Current returns the airspace now; domain.OpenAirspace when nothing
	// is defined.
	Current(ctx context.Context) (domain.Airspace, error)
}

// Zones stores the operator's service areas and no-fly zones, each under
// its domain.ZoneKey. The collection is small (an operator's few hundred
// zones at most), so its queries read all of it.
type Zones interface {
	Collection[domain.Zone]
	// Delete removes the zone stored under key, or returns ENOTFOUND.
	Delete(ctx context.Context, key string) error
	// List returns up to limit zones of kind ("" for both), ordered by
	// key, with keys after the cursor after ("" to start).
	List(ctx context.Context, kind domain.ZoneKind, after string, limit int) ([]*domain.Zone, error)
	// Version returns a token that differs after every write of a zone
	// (create, update, delete) has returned: at once for a write made
	// through this Store, and for one made through any other process at
	// once on the embedded backend (one row read) and within the change
	// feed's poll on Cosmos DB (no request per call while the feed is
	// followed). A reader checks it before trusting the zones it loaded
	// earlier. A unit of work's Zones may answer the version its process
	// knows without reading it, and check it at Commit (see ReadChecker).
	Version(ctx context.Context) (string, error)
}

// Pauses stores the operator's service pauses, keyed by pause id. The
// collection is small (domain.MaxPauses), so its listing reads all of it.
type Pauses interface {
	Collection[domain.Pause]
	// Delete removes the pause, or returns ENOTFOUND.
	Delete(ctx context.Context, id string) error
	// List returns every pause, ordered by id.
	List(ctx context.Context) ([]*domain.Pause, error)
	// DeleteExpired removes the pauses expired at now (domain.Pause.ActiveAt)
	// and returns how many it removed. Each removal is conditional on the
	// pause as this call read it, so a pause put again in the meantime (a
	// new until) is kept rather than lost.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
}

// Message is a message to send to a queue.
type Message struct {
	ID            string    // deliveryId + step: duplicate detection keys on it
	Queue         string    // the destination queue
	Body          []byte    // a JSON wire.Envelope
	CorrelationID string    // born at ingest, carried by every message
	Operation     string    // copied from the envelope for routing and filters
	NotBefore     time.Time // zero: deliver now; else not before this time
	// TraceParent and TraceState are the W3C trace context of the span
	// that sent the message (empty when tracing is off): the bus adapters
	// carry them in the message's application properties, and the step
	// that receives it continues the trace (see package tracing).
	TraceParent string
	TraceState  string
	// Versions names the versions of documents the sending step read or
	// wrote (see Versions), so that the next step may start from them
	// without a read; the bus adapters that can carry it do so in an
	// application property or attribute, the others drop it.
	Versions string
}

// Publisher sends messages. A message whose ID was sent to the same queue
// within the duplicate-detection window is dropped silently.
type Publisher interface {
	// Publish sends every message or returns an error; after an error some
	// messages may have been sent, which duplicate detection makes harmless
	// when the caller retries.
	Publish(ctx context.Context, msgs ...Message) error
}

type emitsKey struct{}

type emits struct {
	function string
	queues   []string
}

// WithEmits says that the function running under ctx may send only to
// queues (its row of topology.Chain); CheckEmits holds what it publishes
// to that.
func WithEmits(ctx context.Context, function string, queues []string) context.Context {
	return context.WithValue(ctx, emitsKey{}, emits{function, queues})
}

// CheckEmits returns an error naming the first of msgs bound for a queue
// the function running under ctx may not send to (WithEmits), or nil; nil
// too when ctx names no function.
func CheckEmits(ctx context.Context, msgs []Message) error {
	e, ok := ctx.Value(emitsKey{}).(emits)
	if !ok {
		return nil
	}
	for _, m := range msgs {
		if !slices.Contains(e.queues, m.Queue) {
			return fmt.Errorf("%s may not send to queue %s (see topology.Chain)", e.function, m.Queue)
		}
	}
	return nil
}

// QueueMessages is the part of one Publish bound for one queue.
type QueueMessages struct {
	Queue string
	Msgs  []*Message
}

// ByQueue groups msgs for a Publisher that sends one queue at a time:
// queues in the order they first appear, each queue's messages in the
// order given. check vets every message first; ByQueue returns the first
// error it returns.
func ByQueue(msgs []Message, check func(*Message) error) ([]QueueMessages, error) {
	var groups []QueueMessages
	at := map[string]int{}
	for i := range msgs {
		m := &msgs[i]
		if err := check(m); err != nil {
			return nil, err
		}
		g, ok := at[m.Queue]
		if !ok {
			g = len(groups)
			at[m.Queue] = g
			groups = append(groups, QueueMessages{Queue: m.Queue})
		}
		groups[g].Msgs = append(groups[g].Msgs, m)
	}
	return groups, nil
}

// Delivered is a message received under a peek-lock.
type Delivered struct {
	Message
	DeliveryCount  int       // 1 on the first delivery
	EnqueuedAt     time.Time // when the message was accepted by the bus
	SequenceNumber int64     // unique per queue, increasing
	LockToken      string    // identifies this delivery's lock
	LockedUntil    time.Time // the lock's expiry

	DeadLetterReason      string // set on messages read from a dead-letter queue
	DeadLetterDescription string
}

// DeadLetterQueue names the dead-letter queue of a queue; receiving from it
// reads the messages dead-lettered there.
func DeadLetterQueue(queue string) string { return queue + "/$deadletterqueue" }

// Consumer receives messages peek-locked and settles them.
type Consumer interface {
	// Receive blocks until at least one message of queue is available (then
	// returns up to max of them, each locked) or ctx ends (ctx.Err()).
	Receive(ctx context.Context, queue string, max int) ([]*Delivered, error)
	// Complete removes the message; ECONFLICT if its lock was lost.
	Complete(ctx context.Context, m *Delivered) error
	// Abandon releases the lock so the message is redelivered at once;
	// ECONFLICT if its lock was lost.
	Abandon(ctx context.Context, m *Delivered) error
	// DeadLetter moves the message to the queue's dead-letter queue with a
	// reason; ECONFLICT if its lock was lost.
	DeadLetter(ctx context.Context, m *Delivered, reason, description string) error
}

// Backlog is implemented by a bus that can count waiting messages cheaply;
// ingest uses it to shed load.
type Backlog interface {
	// Depth returns how many messages of queue wait to be processed (now or
	// later) and how many sit in its dead-letter queue.
	Depth(ctx context.Context, queue string) (active, deadLettered int, err error)
	// Ready returns how many messages of queue a consumer could receive
	// now: neither scheduled for later (a delayed retry) nor locked by a
	// consumer.
	Ready(ctx context.Context, queue string) (int, error)
}

// Bus is a message bus with both ends.
type Bus interface {
	Publisher
	Consumer
}

// Browser is a bus that reads a queue's messages without locking them or
// counting a delivery (Service Bus's peek): what a listing of dead letters
// needs, so that reading them changes nothing. A bus without it is read
// by receiving and giving the messages back.
type Browser interface {
	Browse(ctx context.Context, queue string, n int) ([]*Delivered, error)
}

// Taker is a bus that receives one message of a queue by its id, under a
// lock and counted as a delivery, leaving the queue's other messages alone:
// what replaying one dead letter needs, so that finding it does not count
// a delivery of every message before it. It returns ENOTFOUND when no
// message of queue has that id, or another reader holds it. A bus without
// it is searched by receiving and giving the messages back.
type Taker interface {
	Take(ctx context.Context, queue, id string) (*Delivered, error)
}

// Clock tells the time; tests substitute a fixed or stepping clock.
type Clock interface {
	Now() time.Time
}

// IDs makes identifiers.
type IDs interface {
	// NewID returns a new id for a delivery, an account or a correlation;
	// ids made one after another sort in that order. Not a secret.
	NewID() string
	// NewTrackingID returns an unguessable id (at least 128 random bits).
	NewTrackingID() string
}

// Webhook is one notification for a business's endpoint.
type Webhook struct {
	AccountID      string // whose endpoint: fairness and circuit breaking are per account
	URL            string
	Secret         string // the account's webhook secret, which signs the body
	NotificationID string // receivers dedupe on it
	Body           []byte // JSON
	At             time.Time
}

// Webhooks delivers notifications to businesses' endpoints.
type Webhooks interface {
	// Post delivers one webhook. An error wrapping ErrWebhookRefused means
	// it may never be sent (its address is not one the service sends to);
	// a *WebhookHeld means it was not sent and says when to try again; any
	// other error (the endpoint could not be reached or did not answer
	// 2xx) means it may be tried again.
	Post(ctx context.Context, w Webhook) error
}

// ErrWebhookRefused says a webhook's address is one the service never
// sends to (loopback, private, link-local and the like): trying again
// cannot help.
var ErrWebhookRefused = errors.New("the webhook's address is not one the service sends to")

// WebhookHeld is the error of a webhook held back without being sent:
// either its account already has its share of webhooks in flight (Busy),
// or its endpoint's recent consecutive failures opened its circuit.
type WebhookHeld struct {
	// Busy says the account's share of sends is taken: the webhook waits
	// its turn, which is no failed attempt. Otherwise the circuit is open,
	// which counts as a failed attempt.
	Busy bool
	// RetryAfter is the earliest a new try is worthwhile.
	RetryAfter time.Duration
	// LastFailure is, for an open circuit, the last failure of the
	// endpoint that opened it, when known.
	LastFailure string
}

func (e *WebhookHeld) Error() string {
	if e.Busy {
		return fmt.Sprintf("webhook held back: its account has its share in flight; try again in %s", e.RetryAfter)
	}
	msg := fmt.Sprintf("webhook held back: its endpoint failed repeatedly and its circuit is open; try again in %s", e.RetryAfter)
	if e.LastFailure != "" {
		msg += "; its last failure: " + e.LastFailure
	}
	return msg
}

// ErrStale says a unit of work did not commit because a document it read
// was written by somebody else in the meantime; nothing of it was written,
// and the step may be run again on fresh reads.
var ErrStale = errors.New("a document changed since it was read")

// Transactional is implemented by a backend whose store and queue live in
// one database (the embedded SQLite file), so that a queue step's state
// changes, the messages it sends and the completion of the message it
// handled commit in one transaction: an outbox. The other backends cannot
// share a transaction between the store and the queue, and rely on each
// step's idempotent replay instead (docs/data-layout.md).
type Transactional interface {
	// Begin starts a unit of work.
	Begin() UnitOfWork
}

// UnitOfWork holds one step's state changes until they commit together with
// its messages. It is used by one goroutine.
type UnitOfWork interface {
	// Store reads each document at most once (later reads and updates of
	// it reuse what was read) and holds every write until Commit. A backend
	// may answer a read from what this process last committed or read
	// (see ReadChecker); Commit then checks that it is still current. A Create
	// of a document it has not read is checked at Commit (ErrStale if the
	// document exists by then). Queries (Fleet's List, Deliveries'
	// ListByOwner and PageByOwner) read the backend as it is; Fleet's NearestAvailable
	// counts the drones this unit of work freed or claimed.
	Store() Store
	// Commit writes the held changes, sends out and, when settle is not
	// nil, completes settle: all of it or, on an error, none of it. It
	// returns ErrStale when a document changed since it was read, and
	// ECONFLICT when settle's lock was lost.
	Commit(ctx context.Context, settle *Delivered, out ...Message) error
}

// FreshReader is a unit of work that can read every document from the
// backend itself rather than from a cache of recent documents, for a step
// that acts outside the store (functionapp.Function.ActsOutside): what it
// reads is current when read, and Commit has no cached read to check, so
// a document changed after the step read it does not make the commit
// stale and run the step, and what it did outside, again.
type FreshReader interface {
	ReadFresh()
}

// ReadChecker is a unit of work that may start a step from a cache of
// documents (a commit checks them). A step that fails does not commit, so
// a runtime asks CheckReads before it acts on the failure: ErrStale means
// the step decided on a document that has changed since, and is to be run
// again.
type ReadChecker interface {
	CheckReads(ctx context.Context) error
}

type storeKey struct{}

// WithStore returns a context that hands st to the steps run with it: a
// runtime passes a unit of work's store this way.
func WithStore(ctx context.Context, st Store) context.Context {
	return context.WithValue(ctx, storeKey{}, st)
}

// StoreFrom returns the store ctx carries, or def.
func StoreFrom(ctx context.Context, def Store) Store {
	if st, ok := ctx.Value(storeKey{}).(Store); ok {
		return st
	}
	return def
}

// Store groups the collections of one backend.
type Store struct {
	Deliveries Deliveries
	Packages   Packages
	Fleet      Fleet
	Accounts   Accounts
	APIKeys    APIKeys
	// Confirmations holds the blobs of proofs of delivery.
	Confirmations ConfirmationBlobs
	// Zones holds the service areas and no-fly zones; nil in a store
	// that keeps none, whose airspace is open.
	Zones Zones
	// Analytics holds the running totals the writes of deliveries keep.
	Analytics Analytics
	// Pauses holds the operator's service pauses; nil in a store that
	// keeps none, which is never paused.
	Pauses Pauses
	// Waiting lists the deliveries waiting for a drone across accounts;
	// nil in a store that cannot.
	Waiting WaitingDeliveries
	// Suppressions holds the addresses that asked a business, by the
	// unsubscribe link, for no more messages (domain.SuppressionKey).
	Suppressions Suppressions
}

// Suppressions stores domain.Suppression by domain.SuppressionKey.
type Suppressions = Collection[domain.Suppression]
