// Package handlers holds one function per step of the delivery service.
// Handlers are plain Go over the ports: no handler imports an SDK, so the
// same code runs under the Functions host, the standalone runtime and AWS
// Lambda, on the embedded backend or on Azure.
package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/apidoc"
	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/keylock"
	"github.com/fabrikam/dronedelivery/shared/logctx"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// Config tunes the steps; the zero value means the defaults.
type Config struct {
	// RetryBase is the first delay before scheduling is tried again when no
	// drone is available; each attempt doubles it up to RetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
	// DispatchRadiusKm bounds the search for a drone around the pickup: a
	// drone farther away is never considered, which keeps a search for an
	// unservable package from walking the whole fleet.
	DispatchRadiusKm float64
	// Tracking tunes how telemetry moves deliveries.
	Tracking domain.TrackingConfig
	// Confirmation bounds proofs of delivery: how far from the dropoff
	// (default 100 m, the CONFIRMATION_RADIUS_M setting) and how far ahead
	// of this clock one may be dated.
	Confirmation domain.ConfirmationRules
	// WebhookAttempts is how many times a notification is offered to a
	// business's webhook before the step gives up on it (a permanent
	// failure: see SendNotification for what each runtime does then).
	WebhookAttempts int
	// AllowPrivateWebhooks (a development setting) lets sign-up accept
	// webhook URLs on loopback and private hosts; the sender (Deps.Webhooks)
	// must be told the same to reach them.
	AllowPrivateWebhooks bool
	// OperatorKey is the bearer token of the fleet endpoints (drones and
	// telemetry); empty closes them.
	OperatorKey string
	// MessageAttempts is how many times a customer message is offered to
	// its provider before it is dead-lettered.
	MessageAttempts int
	// PublicBaseURL is where customers reach the API (scheme and host,
	// e.g. https://drones.fabrikam.example): the tracking and unsubscribe
	// links in their messages start with it. Empty makes the links paths.
	PublicBaseURL string
	// MaxBacklog is how many messages may wait in the chain's queues before
	// ingest answers 503 with Retry-After; zero means no bound. Only a bus
	// that can count its queues (the embedded one) applies it.
	MaxBacklog int
	// KeyCacheTTL is how long a looked-up API key, or an account's webhook
	// settings, is trusted without reading it again, and so how long a key
	// revoked, or a webhook changed, through another process keeps working
	// here; negative turns both caches off.
	KeyCacheTTL time.Duration

	// Feasibility bounds what ingest accepts besides what the fleet can do:
	// how far in the past a pickupTime may be, how far ahead a deadline.
	Feasibility domain.FeasibilityRules
	// FleetSummaryTTL is how old the summary of the fleet's capabilities
	// that ingest checks requests against may grow before it is listed
	// again; drones registered through this process count at once.
	FleetSummaryTTL time.Duration
	// MaxEligible bounds the eligible drones one dispatch compares
	// (domain.ChoiceLimits).
	MaxEligible int
	// DispatchMargin is how much earlier than the flight to the pickup
	// needs a booked pickup's drone is dispatched (default 2 minutes).
	DispatchMargin time.Duration
	// DispatchLead is the flight time a booking assumes when no drone
	// could be chosen at booking time (default 15 minutes).
	DispatchLead time.Duration
	// MaxAccountShare, between 0 and 1, caps the share of an area's drones
	// one account's deliveries may hold at once; 0 (the default) sets no
	// cap, so an account alone may use every drone.
	MaxAccountShare float64
	// MaxActiveDeliveries is how many deliveries that have not ended an
	// account may have; ingest answers 429 beyond it. 0 means no limit.
	MaxActiveDeliveries int
	// TrackingLinkLifetime is how long after a delivery ends (Completed,
	// Cancelled or Failed) its tracking link keeps answering; after that
	// the page and feed answer 410 Gone. Zero means
	// DefaultTrackingLinkLifetime; negative keeps links forever.
	TrackingLinkLifetime time.Duration
	// Push tunes the tracking page's push (handlers/push.go).
	Push PushConfig
}

// DefaultTrackingLinkLifetime is how long a finished delivery stays
// trackable: long enough for a customer to look back at a delivery, short
// enough that a link forwarded or left in an inbox does not show where
// someone lives for ever.
const DefaultTrackingLinkLifetime = 30 * 24 * time.Hour

// DefaultKeyCacheTTL is the default Config.KeyCacheTTL.
const DefaultKeyCacheTTL = 30 * time.Second

// keyCacheSize bounds the keys, and the accounts' webhook settings, one
// process remembers.
const keyCacheSize = 10000

func (c Config) withDefaults() Config {
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.DispatchRadiusKm <= 0 {
		c.DispatchRadiusKm = 200
	}
	c.Tracking = c.Tracking.WithDefaults()
	c.Confirmation = c.Confirmation.WithDefaults()
	if c.WebhookAttempts <= 0 {
		c.WebhookAttempts = 8
	}
	if c.MessageAttempts <= 0 {
		c.MessageAttempts = 8
	}
	if c.KeyCacheTTL == 0 {
		c.KeyCacheTTL = DefaultKeyCacheTTL
	}
	c.Feasibility = c.Feasibility.WithDefaults()
	c.Feasibility.DispatchRadiusKm = c.DispatchRadiusKm
	c.Push = c.Push.withDefaults()
	if c.DispatchMargin <= 0 {
		c.DispatchMargin = 2 * time.Minute
	}
	if c.DispatchLead <= 0 {
		c.DispatchLead = 15 * time.Minute
	}
	if c.FleetSummaryTTL <= 0 {
		c.FleetSummaryTTL = DefaultFleetSummaryTTL
	}
	if c.TrackingLinkLifetime == 0 {
		c.TrackingLinkLifetime = DefaultTrackingLinkLifetime
	}
	return c
}

// Deps is what the handlers need from the outside.
type Deps struct {
	Store ports.Store
	Bus   ports.Publisher
	Clock ports.Clock
	IDs   ports.IDs
	// Webhooks delivers notifications to businesses (webhook.NewSender is
	// the one a service runs with); nil refuses every webhook, which
	// dead-letters the notifications of accounts that have a webhook URL.
	Webhooks ports.Webhooks
	Log      *slog.Logger
	Config   Config

	// Messenger sends customers their e-mail and SMS (backend.OpenMessaging
	// builds the one a service runs with); nil refuses every message, which
	// dead-letters them.
	Messenger ports.Messenger
	// Outbox reads back the messages kept rather than sent; nil (with a
	// Messenger) means there is none, and GET …/outbox answers 404.
	Outbox ports.Outbox
	// Airspace tells dispatch where drones may fly; nil means the
	// store's zones (airspace.For), or the open airspace for a store
	// that keeps none.
	Airspace ports.Airspace
	// Push relays changes to the tracking pages through a service that
	// holds their connections (Web PubSub); nil means none.
	Push ports.Push
	// DeadLetters is the bus whose dead-letter queues the operator reads
	// and replays from (GET /api/deadletters); nil answers 503 there.
	DeadLetters ports.Bus
}

// Handlers binds the step functions to their dependencies.
type Handlers struct {
	store     ports.Store
	bus       ports.Publisher
	clock     ports.Clock
	ids       ports.IDs
	webhooks  ports.Webhooks
	messenger ports.Messenger
	// confirming makes the confirmations of one delivery take turns, so
	// that of many sent at once only the first stores its blob: the others
	// read the delivery it confirmed and are refused before they write.
	confirming *keylock.Turns
	// admitting makes the requests of one account take turns from the
	// count of its active deliveries to the store of the new one, when
	// Config.MaxActiveDeliveries limits them: counted side by side, two
	// requests would both see room for one more.
	admitting *keylock.Turns
	// pausing makes the puts of pauses take turns from the count of those
	// in force (domain.MaxPauses) to the write: counted side by side, puts
	// sent at once all saw room for one more.
	pausing *keylock.Turns
	outbox  ports.Outbox
	log     *slog.Logger
	cfg     Config
	// keys remembers looked-up API keys by prefix. Revoking a key through
	// this process drops it at once; another process notices within the
	// TTL. Absent keys are remembered too, so guessing at prefixes costs
	// the store nothing extra; issuing a key drops its prefix.
	keys *ttlCache[domain.APIKey]
	// hooks remembers each account's webhook settings, which the
	// notification step reads for every notification. Changing them
	// (PutWebhook) through this process drops them at once; another
	// process sends with the old URL and secret until its entry expires,
	// as it accepts a revoked key.
	hooks *ttlCache[accountHook]
	// givenUpHooks remembers, by account and URL, webhooks a notice was
	// given up on lately, with the id of the message given up on
	// (SendNotification).
	givenUpHooks *ttlCache[string]
	hookReads    singleflight.Group
	operatorHash []byte // SHA-256 of Config.OperatorKey; nil when there is none
	backlog      backlogGate
	ready        readiness
	air          ports.Airspace
	summary      fleetSummary
	waiting      waitingBoard
	push         ports.Push
	console      consolePush
	pauses       pauseSet
	deadLetters  ports.Bus
}

// New returns the handlers over deps.
func New(d Deps) *Handlers {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	cfg := d.Config.withDefaults()
	h := &Handlers{store: d.Store, bus: d.Bus, clock: d.Clock, ids: d.IDs, webhooks: d.Webhooks, log: log, cfg: cfg,
		messenger: d.Messenger, confirming: &keylock.Turns{}, admitting: &keylock.Turns{}, pausing: &keylock.Turns{}, outbox: d.Outbox, air: d.Airspace, push: d.Push, deadLetters: d.DeadLetters, keys: newTTLCache[domain.APIKey](cfg.KeyCacheTTL, keyCacheSize),
		hooks: newTTLCache[accountHook](cfg.KeyCacheTTL, keyCacheSize), givenUpHooks: newTTLCache[string](givenUpHookMemory, keyCacheSize)}
	if h.air == nil {
		h.air = airspace.For(d.Store)
	}
	if h.webhooks == nil {
		h.webhooks = unwired{}
	}
	if h.messenger == nil {
		h.messenger = unwired{}
	}
	if cfg.OperatorKey != "" {
		sum := sha256.Sum256([]byte(cfg.OperatorKey))
		h.operatorHash = sum[:]
	}
	return h
}

// unwired stands in for a webhook sender or a messenger the service was
// built without: it refuses every send for good, so the notification is
// dead-lettered with the reason rather than retried.
type unwired struct{}

var errUnwired = errors.New("this service has no sender for it")

func (unwired) Post(context.Context, ports.Webhook) error {
	return fmt.Errorf("%w: %w", ports.ErrWebhookRefused, errUnwired)
}

func (unwired) Send(context.Context, ports.Outgoing) error {
	return fmt.Errorf("%w: %w", ports.ErrUndeliverable, errUnwired)
}

// Registry maps every function name under functions/ to its handler. Each
// HTTP function is wrapped in its guard here, so every runtime enforces the
// same authentication, ownership rules and media type.
func (h *Handlers) Registry() functionapp.Registry {
	guarded := func(a access) func(functionapp.HTTPFunc) functionapp.Function {
		return func(fn functionapp.HTTPFunc) functionapp.Function { return functionapp.Function{HTTP: h.guard(a, fn)} }
	}
	biz, op, bizOrOp := guarded(business), guarded(operator), guarded(businessOrOperator)
	open := func(fn functionapp.HTTPFunc) functionapp.Function {
		return functionapp.Function{HTTP: h.guard(anyone, fn), Public: true}
	}
	reg := functionapp.Registry{
		"IngestDelivery": biz(h.IngestDelivery),
		"QuoteDelivery":  biz(h.QuoteDelivery),
		// The chain's steps only write conditionally and send messages, so
		// they may start from the versions their message carries.
		"ScheduleDrone":     {Queue: h.ScheduleDrone, StartsFromCarriedVersions: true},
		"UpdatePackage":     {Queue: h.UpdatePackage, StartsFromCarriedVersions: true},
		"ComputeEta":        {Queue: h.ComputeEta, StartsFromCarriedVersions: true},
		"GetDelivery":       bizOrOp(h.GetDelivery),
		"GetDeliveryStatus": bizOrOp(h.GetDeliveryStatus),
		"ListDeliveries":    biz(h.ListDeliveries),
		"GetPackage":        biz(h.GetPackage),
		"PutDrone":          op(h.PutDrone),
		"GetDrone":          op(h.GetDrone),
		"ListDrones":        op(h.ListDrones),
		"Healthz":           open(h.Healthz),
		"Readyz":            open(h.Readyz),

		"PostTelemetry":        {HTTP: h.guard(droneOrOperator, h.PostTelemetry)},
		"TrackDrone":           {Queue: h.TrackDrone},
		"CancelDelivery":       biz(h.CancelDelivery),
		"RescheduleDelivery":   biz(h.RescheduleDelivery),
		"PostConfirmation":     biz(h.PostConfirmation),
		"GetConfirmation":      biz(h.GetConfirmation),
		"PostNotifyMeRequest":  biz(h.PostNotifyMeRequest),
		"GetNotifications":     biz(h.GetNotifications),
		"GetHistory":           bizOrOp(h.GetHistory),
		"SendNotification":     {Queue: h.SendNotification, ActsOutside: true},
		"TrackPage":            open(h.TrackPage),
		"Console":              open(h.Console),
		"TrackFeed":            open(h.TrackFeed),
		"TrackEvents":          {HTTP: h.guard(anyone, h.TrackEventsUnavailable), Stream: h.TrackEvents, Public: true},
		"TrackNegotiate":       open(h.TrackNegotiate),
		"GetDeliveriesSummary": bizOrOp(h.GetDeliveriesSummary),
		"GetUtilization":       bizOrOp(h.GetUtilization),
		"CreateAccount":        open(h.CreateAccount),
		"GetAccount":           biz(h.GetAccount),
		"CreateApiKey":         biz(h.CreateAPIKey),
		"RevokeApiKey":         biz(h.RevokeAPIKey),
		"PutWebhook":           biz(h.PutWebhook),
		"OpenApiDocument":      open(h.OpenAPIDocument),
		"ApiReference":         open(h.APIReference),

		"ListNotifyMeRequests":  biz(h.ListNotifyMeRequests),
		"DeleteNotifyMeRequest": biz(h.DeleteNotifyMeRequest),
		"UnsubscribePage":       open(h.UnsubscribePage),
		"Unsubscribe":           {HTTP: h.guardForm(h.Unsubscribe), Public: true},
		"GetOutbox":             biz(h.GetOutbox),
		"SendCustomerMessage":   {Queue: h.SendCustomerMessage, ActsOutside: true},

		"PutServiceArea":    op(zoneFunc(h.putZone).forKind(domain.ServiceArea)),
		"GetServiceArea":    op(zoneFunc(h.getZone).forKind(domain.ServiceArea)),
		"DeleteServiceArea": op(zoneFunc(h.deleteZone).forKind(domain.ServiceArea)),
		"ListServiceAreas":  op(zoneFunc(h.listZones).forKind(domain.ServiceArea)),
		"PutNoFlyZone":      op(zoneFunc(h.putZone).forKind(domain.NoFlyZone)),
		"GetNoFlyZone":      op(zoneFunc(h.getZone).forKind(domain.NoFlyZone)),
		"DeleteNoFlyZone":   op(zoneFunc(h.deleteZone).forKind(domain.NoFlyZone)),
		"ListNoFlyZones":    op(zoneFunc(h.listZones).forKind(domain.NoFlyZone)),

		"DroneAction":    op(h.DroneAction),
		"DeliveryAction": op(h.DeliveryAction),
		"CreateDroneKey": op(h.CreateDroneKey),
		"RevokeDroneKey": op(h.RevokeDroneKey),
		"PutPause":       op(h.PutPause),
		"GetPause":       op(h.GetPause),
		"DeletePause":    op(h.DeletePause),
		"ListPauses":     op(h.ListPauses),

		"ListWaitingDeliveries": op(h.ListWaitingDeliveries),
		"ListDeadLetters":       op(h.ListDeadLetters),
		"ReplayDeadLetter":      op(h.ReplayDeadLetter),
		"ConsoleEvents":         {HTTP: h.guard(operator, h.ConsoleEventsUnavailable), Stream: h.guardStream(operator, h.ConsoleEvents)},
		"ConsoleNegotiate":      op(h.ConsoleNegotiate),
	}
	h.holdToDocument(reg)
	// The chain's table says what each step reads, which Registry.Check
	// holds the bindings to, and where each function may send, which
	// EmitsOnly and EmitsOnlyHTTP do.
	emits := map[string][]string{}
	for _, s := range topology.Chain {
		emits[s.Function] = s.Emits
		if f, ok := reg[s.Function]; ok && s.Reads != "" {
			f.Reads = s.Reads
			reg[s.Function] = f
		}
	}
	for name, f := range reg {
		if f.HTTP != nil {
			f.HTTP = functionapp.EmitsOnlyHTTP(name, emits[name], f.HTTP)
			reg[name] = f
		}
	}
	return reg.Use(functionapp.EmitsOnly(emits))
}

// recovered, deferred by work that runs in a goroutine of its own, outside
// the recovery the runtimes give each invocation (a listing or a check
// that requests share), turns a panic into *err and an ERROR line with its
// stack, rather than the end of the process.
func (h *Handlers) recovered(what string, err *error) {
	if r := recover(); r != nil {
		h.log.Error("panic in "+what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("%s: panic: %v", what, r)
	}
}

// publish sends msgs. One bound for a queue the chain's table does not let
// the function at hand send to (ports.CheckEmits) is logged as an error,
// which fails the handler tests, and sent all the same: a row of the table
// that a rare path outgrew must not strand a drone or a notice.
func (h *Handlers) publish(ctx context.Context, msgs ...ports.Message) error {
	h.checkEmits(ctx, msgs)
	return h.bus.Publish(ctx, msgs...)
}

func (h *Handlers) checkEmits(ctx context.Context, msgs []ports.Message) {
	if err := ports.CheckEmits(ctx, msgs); err != nil {
		h.log.ErrorContext(ctx, "a message to a queue topology.Chain does not name for this function; sent all the same", "err", err)
	}
}

// openedFromLinks are the functions a person reaches by a link (a page, or
// the unsubscribe link's button): they ignore query parameters they do not
// read, since whoever passed the link on may have added some (utm_source,
// a mail provider's link wrapper), and a page refused for that would help
// nobody.
var openedFromLinks = []string{"TrackPage", "Console", "ApiReference", "UnsubscribePage", "Unsubscribe"}

// holdToDocument holds every other HTTP function to what the API document
// declares for its operation, before anything else is read: a query
// parameter it does not take, or one given twice or empty
// (wire.CheckQuery), and a body where it takes none, are 400 naming them,
// instead of being ignored while the request goes ahead. The listings
// check their parameters' values besides.
func (h *Handlers) holdToDocument(reg functionapp.Registry) {
	declared, err := apidoc.OperationInputs()
	if err != nil {
		panic(err) // the document is built in, and its tests read it
	}
	for name, f := range reg {
		if slices.Contains(openedFromLinks, name) {
			continue
		}
		in := declared[name]
		check := func(req *functionapp.Request) error {
			if !in.Body && !saysNothing(req.Body) {
				return domain.Invalid("body", "is not taken by this operation, which has none")
			}
			return wire.CheckQuery(req.Query, in.Query...)
		}
		if next := f.HTTP; next != nil {
			f.HTTP = func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
				if err := check(req); err != nil {
					return h.errorResponse(ctx, err)
				}
				return next(ctx, req)
			}
		}
		if next := f.Stream; next != nil {
			f.Stream = func(ctx context.Context, req *functionapp.Request, st functionapp.Stream) *functionapp.Response {
				if err := check(req); err != nil {
					return h.errorResponse(ctx, err)
				}
				return next(ctx, req, st)
			}
		}
		reg[name] = f
	}
}

// saysNothing reports whether a body is absent, blank or an empty JSON
// object (white space in it too: "{ }"), which some clients send with
// every request.
func saysNothing(body []byte) bool {
	b := bytes.TrimSpace(body)
	return len(b) == 0 || len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}

// The steps' names make message ids (wire.MessageID).
const (
	stepRequested = "requested"
	stepScheduled = "drone-scheduled"
	stepPackaged  = "package-updated"
)

// message builds the message that carries env to queue; its id names the
// delivery, the envelope's generation and the step.
func message(queue, step string, env wire.Envelope) ports.Message {
	body, _ := json.Marshal(env) // an Envelope always encodes
	return ports.Message{
		ID:            wire.MessageID(env.DeliveryID, env.Generation, step),
		Queue:         queue,
		Body:          body,
		CorrelationID: env.CorrelationID,
		Operation:     string(env.Operation),
	}
}

// nextMessage is the message that hands d to the step reading queue. After
// a reschedule the generation is part of the id, so the new run's messages
// are not taken for duplicates of the old run's.
func nextMessage(d *domain.Delivery, queue, step string) ports.Message {
	return message(queue, step, wire.Envelope{Operation: wire.OpDelivery, DeliveryID: d.ID, CorrelationID: d.CorrelationID, Generation: d.Generation})
}

// notifyMessages hands notifications on: one message each to the webhook
// step, and one to the customer-message step for every channel of every
// subscription the delivery has now, for the notices customers are sent
// (domain.Delivery.ForCustomers). Their ids follow from the
// notification's, so a step that runs again sends nothing twice.
func notifyMessages(d *domain.Delivery, ns []domain.Notification) []ports.Message {
	out := make([]ports.Message, 0, len(ns)*(1+2*len(d.Subscriptions)))
	for _, n := range ns {
		body, _ := json.Marshal(wire.Envelope{Operation: wire.OpNotify, DeliveryID: d.ID, CorrelationID: d.CorrelationID, NotificationID: n.ID})
		out = append(out, ports.Message{ID: n.ID, Queue: topology.QueueNotifications, Body: body, CorrelationID: d.CorrelationID, Operation: string(wire.OpNotify)})
		if !d.ForCustomers(&n) {
			continue
		}
		for _, s := range d.Subscriptions {
			for _, ch := range s.Channels() {
				out = append(out, customerMessage(wire.Envelope{Operation: wire.OpCustomerMessage, DeliveryID: d.ID, CorrelationID: d.CorrelationID,
					NotificationID: n.ID, SubscriptionID: s.ID, Channel: ch}))
			}
		}
	}
	return out
}

// requestedMessage starts the chain for a newly accepted delivery.
func requestedMessage(d *domain.Delivery) ports.Message {
	return nextMessage(d, topology.QueueDeliveryRequests, stepRequested)
}

// withDelivery adds a delivery's ids to the log context.
func withDelivery(ctx context.Context, env *wire.Envelope) context.Context {
	return logctx.With(ctx, "deliveryId", env.DeliveryID, "correlationId", env.CorrelationID)
}

// idAndBody reads the {id} of a route that writes to one resource, and its
// body with parse.
func idAndBody[B any](req *functionapp.Request, parse func([]byte) (B, error)) (string, B, error) {
	id := req.Params["id"]
	if err := domain.ValidID("id", id); err != nil {
		var none B
		return id, none, err
	}
	body, err := parse(req.Body)
	return id, body, err
}

// notFoundAs rewords a store's ENOTFOUND error as format says, so the
// problem names what the caller asked for rather than a storage key; any
// other error, or nil, is returned as it is.
func notFoundAs(err error, format string, args ...any) error {
	return namedNotFound(err, "", format, args...)
}

// namedNotFound is notFoundAs for a thing named by a request's field (a
// query parameter, say), which the problem names.
func namedNotFound(err error, field, format string, args ...any) error {
	if domain.IsCode(err, domain.ENOTFOUND) {
		e := domain.Errorf(domain.ENOTFOUND, format, args...)
		e.Field = field
		return e
	}
	return err
}

// errorStatus is the HTTP status of each application error code; any other
// code is a 500.
var errorStatus = map[string]int{
	domain.EINVALID:       http.StatusBadRequest,
	domain.EUNAUTHORIZED:  http.StatusUnauthorized,
	domain.EFORBIDDEN:     http.StatusForbidden,
	domain.ENOTFOUND:      http.StatusNotFound,
	domain.ECONFLICT:      http.StatusConflict,
	domain.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	domain.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	domain.EUNAVAILABLE:   http.StatusServiceUnavailable,
	domain.EPRECONDITION:  http.StatusServiceUnavailable,
}

// errorResponse maps an application error to a problem response; anything
// unexpected is logged and reported without details.
func (h *Handlers) errorResponse(ctx context.Context, err error) *functionapp.Response {
	status, ok := errorStatus[domain.ErrorCode(err)]
	if !ok {
		status = http.StatusInternalServerError
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The client hung up (the runtime cancels a request's context
		// then): nothing of the service failed, and nobody reads the
		// answer.
		h.log.InfoContext(ctx, "request not finished: its client gave up", "err", err)
		status = http.StatusServiceUnavailable
		err = domain.Unavailable(err, "the request was given up before it finished; retry")
	} else if !ok && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		// Its time ran out (functionapp.HandlerTimeout) waiting on a
		// dependency that did not answer. (A failure the handler already
		// worded, such as "could not be queued; retry with deliveryId",
		// keeps its words.)
		h.log.ErrorContext(ctx, "request not finished in time: a dependency did not answer", "err", err,
			"timeout", functionapp.HandlerTimeout.String())
		status = http.StatusServiceUnavailable
		err = domain.Unavailable(err, "the service could not finish the request in time; retry")
	} else if status >= 500 {
		h.log.ErrorContext(ctx, "request failed", "err", err)
	}
	resp := functionapp.Problem(status, domain.ErrorField(err), domain.ErrorMessage(err))
	switch status {
	case http.StatusServiceUnavailable:
		resp.Header.Set("Retry-After", "1")
	case http.StatusUnauthorized:
		resp.Header.Set("WWW-Authenticate", `Bearer realm="dronedelivery"`)
	}
	return resp
}

// st is the store a step uses: the unit of work the runtime started for the
// message when the backend has them (ports.Transactional), so the step's
// writes commit with its messages; otherwise the store itself.
func (h *Handlers) st(ctx context.Context) ports.Store { return ports.StoreFrom(ctx, h.store) }

// loadEnvelope decodes a queue message and finds its delivery. A message
// naming no known delivery can never succeed.
func (h *Handlers) loadEnvelope(ctx context.Context, msg *ports.Delivered) (context.Context, *wire.Envelope, *domain.Delivery, error) {
	env, err := wire.ParseEnvelope(msg.Body)
	if err != nil {
		return ctx, nil, nil, err
	}
	ctx = withDelivery(ctx, env)
	d, err := h.st(ctx).Deliveries.Find(ctx, env.DeliveryID)
	if domain.IsCode(err, domain.ENOTFOUND) {
		if msg.DeliveryCount < 3 {
			// A message is sent only after the delivery it names was
			// written, but the write may have been another instance's.
			// infra/modules/cosmos.bicep gives the account Strong
			// consistency, under which every read returns the last
			// committed write; under Session consistency a read without the
			// writer's session token may come from a replica that trails
			// it (Consistent Prefix for "clients outside of the session",
			// learn.microsoft.com/azure/cosmos-db/consistency-levels). For
			// an account configured so, a miss is tried twice more before
			// it is taken as final, after the runtime's delay (under the
			// Functions host a scheduled retry, whose DeliveryCount counts
			// the copies before it).
			return ctx, env, nil, fmt.Errorf("delivery %s not found yet: %w", env.DeliveryID, err)
		}
		return ctx, env, nil, &domain.Permanent{Err: err}
	}
	if err != nil {
		return ctx, env, nil, err
	}
	return ctx, env, d, nil
}
