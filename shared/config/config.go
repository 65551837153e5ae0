// Package config reads the settings that choose and reach the backends. It
// uses the names the Functions host's identity-based connections use, so
// one set of app settings serves the bindings and the handler alike.
package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Setting names, as the bindings' "connection" prefixes make them.
const (
	CosmosPrefix     = "CosmosDBConnection"
	ServiceBusPrefix = "ServiceBusConnection"
	CosmosDatabase   = "COSMOS_DATABASE"
	DataDir          = "DATA_DIR"
	// ConfirmationRadius is how far, in metres, from a delivery's dropoff
	// its proof of delivery may be given (POST …/confirmations).
	ConfirmationRadius = "CONFIRMATION_RADIUS_M"
	// TelemetryClockSkew is how far ahead of the service's clock a
	// telemetry report may be dated (a Go duration; default 5m). A
	// simulator whose clock runs faster than the real one (make run sets
	// 24h for `dronedelivery simulate -time-scale`) needs more.
	TelemetryClockSkew = "TELEMETRY_CLOCK_SKEW"
)

// MaxTelemetryClockSkew bounds TelemetryClockSkew: a day, as far as the
// service takes reports from the past.
const MaxTelemetryClockSkew = 24 * time.Hour

// The webhook settings. Unset, each takes the webhook adapter's default.
const (
	// WebhookAllowPrivate, "true", lets webhooks reach loopback, private
	// and link-local addresses, and sign-up accept such webhook URLs: for
	// development and tests on one machine only. Unset or "false" refuses
	// them.
	WebhookAllowPrivate = "WEBHOOK_ALLOW_PRIVATE"
	// WebhookTimeout bounds one webhook attempt (a duration, e.g. 5s).
	WebhookTimeout = "WEBHOOK_TIMEOUT"
	// WebhookConcurrency is how many webhooks one account may have in
	// flight at once, per process.
	WebhookConcurrency = "WEBHOOK_CONCURRENCY"
	// WebhookSlowConcurrency is how many webhooks to slow endpoints, of
	// all accounts together, may be in flight at once, per process.
	WebhookSlowConcurrency = "WEBHOOK_SLOW_CONCURRENCY"
	// WebhookBreakerFailures is how many consecutive failures of an
	// account's endpoint open its circuit.
	WebhookBreakerFailures = "WEBHOOK_BREAKER_FAILURES"
	// WebhookBreakerCoolDown is how long an open circuit fails fast before
	// one trial is let through (a duration, e.g. 30s).
	WebhookBreakerCoolDown = "WEBHOOK_BREAKER_COOLDOWN"
)

// Webhooks are the webhook settings; zero values mean the defaults.
type Webhooks struct {
	AllowPrivate   bool
	Timeout        time.Duration
	PerAccount     int
	SlowTotal      int
	FailuresToOpen int
	CoolDown       time.Duration
}

// DefaultConfirmationRadiusMeters is the ConfirmationRadius when it is unset.
const DefaultConfirmationRadiusMeters = 100

// The settings that choose SQS, for running on AWS: there the state is
// still in Cosmos DB, reached with a connection string.
const (
	MessageBus      = "MESSAGE_BUS"       // "sqs" chooses SQS; unset leaves the choice to the settings above
	SQSEndpoint     = "SQS_ENDPOINT"      // a local SQS-compatible server; unset on AWS
	SQSCreateQueues = "SQS_CREATE_QUEUES" // "true": create missing queues, for local servers only
	SQSQueuePrefix  = "SQS_QUEUE_PREFIX"  // begins every queue name, so deployments can share an account
	AWSRegion       = "AWS_REGION"        // set by Lambda itself
)

// Connection is how to reach one Azure service.
type Connection struct {
	Prefix           string // the setting prefix, for messages
	Endpoint         string // Cosmos account endpoint URL, or Service Bus namespace host name
	ConnectionString string // for local doubles and emulators; exclusive with Endpoint
	ManagedIdentity  bool   // use ManagedIdentityCredential rather than DefaultAzureCredential
	ClientID         string // a user-assigned identity's client id
}

// Configured reports whether any setting of the connection was given.
func (c Connection) Configured() bool { return c.Endpoint != "" || c.ConnectionString != "" }

// SQS is how to reach SQS.
type SQS struct {
	Region       string
	Endpoint     string // empty: the region's public endpoint
	QueuePrefix  string
	CreateQueues bool
}

// Config is the backend configuration.
type Config struct {
	// Azure is true when Cosmos DB and Service Bus are configured; false
	// means the embedded backend in DataDir, unless AWS is true.
	Azure bool
	// AWS is true when SQS is chosen; Cosmos DB then holds the state.
	AWS        bool
	DataDir    string
	Database   string
	Cosmos     Connection
	ServiceBus Connection
	SQS        SQS
	// ConfirmationRadiusMeters is the ConfirmationRadius setting.
	ConfirmationRadiusMeters float64
	// TelemetryClockSkew is the TelemetryClockSkew setting; zero when
	// unset (the tracking default applies).
	TelemetryClockSkew time.Duration
	// Webhooks are the WEBHOOK_* settings.
	Webhooks Webhooks
}

// Load reads the configuration from env (os.Getenv in production). A
// missing or contradictory setting is an error that names it.
func Load(env func(string) string) (*Config, error) {
	c := &Config{DataDir: env(DataDir), Database: env(CosmosDatabase)}
	if c.DataDir == "" {
		c.DataDir = ".data"
	}
	if c.Database == "" {
		c.Database = "dronedelivery"
	}
	var err error
	if c.ConfirmationRadiusMeters, err = confirmationRadius(env); err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(env(TelemetryClockSkew)); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > MaxTelemetryClockSkew {
			return nil, fmt.Errorf("%s is %q; it must be a duration from 1s to %s, such as 5m", TelemetryClockSkew, s, MaxTelemetryClockSkew)
		}
		c.TelemetryClockSkew = d
	}
	if c.Webhooks, err = webhooks(env); err != nil {
		return nil, err
	}
	if c.Cosmos, err = connection(env, CosmosPrefix, "accountEndpoint"); err != nil {
		return nil, err
	}
	if c.ServiceBus, err = connection(env, ServiceBusPrefix, "fullyQualifiedNamespace"); err != nil {
		return nil, err
	}
	if c.AWS, err = loadSQS(env, c); err != nil {
		return nil, err
	}
	if c.AWS {
		if err := validEndpoints(c); err != nil {
			return nil, err
		}
		return c, nil
	}
	switch {
	case c.Cosmos.Configured() && !c.ServiceBus.Configured():
		return nil, fmt.Errorf("%s is configured but %s is not: set %s__fullyQualifiedNamespace (or %s for a local double)", CosmosPrefix, ServiceBusPrefix, ServiceBusPrefix, ServiceBusPrefix)
	case c.ServiceBus.Configured() && !c.Cosmos.Configured():
		return nil, fmt.Errorf("%s is configured but %s is not: set %s__accountEndpoint (or %s for a local double)", ServiceBusPrefix, CosmosPrefix, CosmosPrefix, CosmosPrefix)
	}
	c.Azure = c.Cosmos.Configured()
	if err := validEndpoints(c); err != nil {
		return nil, err
	}
	return c, nil
}

// confirmationRadius reads ConfirmationRadius: a number of metres from 1 to
// 10,000 (beyond that the check proves nothing about where the recipient
// was).
func confirmationRadius(env func(string) string) (float64, error) {
	s := strings.TrimSpace(env(ConfirmationRadius))
	if s == "" {
		return DefaultConfirmationRadiusMeters, nil
	}
	m, err := strconv.ParseFloat(s, 64)
	if err != nil || !(m >= 1 && m <= 10000) {
		return 0, fmt.Errorf("%s is %q; it must be a distance in metres from 1 to 10000", ConfirmationRadius, s)
	}
	return m, nil
}

// webhooks reads the WEBHOOK_* settings.
func webhooks(env func(string) string) (Webhooks, error) {
	var w Webhooks
	switch v := strings.ToLower(strings.TrimSpace(env(WebhookAllowPrivate))); v {
	case "", "false":
	case "true":
		w.AllowPrivate = true
	default:
		return w, fmt.Errorf("%s is %q; it must be true or false", WebhookAllowPrivate, v)
	}
	var err error
	if w.Timeout, err = duration(env, WebhookTimeout, time.Second, 10*time.Minute); err != nil {
		return w, err
	}
	if w.CoolDown, err = duration(env, WebhookBreakerCoolDown, time.Second, time.Hour); err != nil {
		return w, err
	}
	if w.PerAccount, err = count(env, WebhookConcurrency, 1, 1000); err != nil {
		return w, err
	}
	if w.SlowTotal, err = count(env, WebhookSlowConcurrency, 1, 1000); err != nil {
		return w, err
	}
	if w.FailuresToOpen, err = count(env, WebhookBreakerFailures, 1, 1000); err != nil {
		return w, err
	}
	return w, nil
}

// duration reads an optional duration setting within [lo, hi]; unset is 0.
func duration(env func(string) string, name string, lo, hi time.Duration) (time.Duration, error) {
	return bounded(env, name, lo, hi, time.ParseDuration, "a duration")
}

// count reads an optional whole-number setting within [lo, hi]; unset is 0.
func count(env func(string) string, name string, lo, hi int) (int, error) {
	return bounded(env, name, lo, hi, strconv.Atoi, "a whole number")
}

// bounded reads an optional setting that parse reads and that must lie
// within [lo, hi]; unset is the zero value. what names the kind of value
// in the error.
func bounded[T int | time.Duration](env func(string) string, name string, lo, hi T, parse func(string) (T, error), what string) (T, error) {
	var zero T
	s := strings.TrimSpace(env(name))
	if s == "" {
		return zero, nil
	}
	v, err := parse(s)
	if err != nil || v < lo || v > hi {
		return zero, fmt.Errorf("%s is %q; it must be %s from %v to %v", name, s, what, lo, hi)
	}
	return v, nil
}

// loadSQS reads the SQS settings into c and reports whether SQS is chosen.
// Managed identity does not exist on AWS, so Cosmos DB must then be reached
// with a connection string, and Service Bus must not be configured as well.
func loadSQS(env func(string) string, c *Config) (bool, error) {
	bus := strings.ToLower(strings.TrimSpace(env(MessageBus)))
	c.SQS = SQS{Endpoint: strings.TrimSpace(env(SQSEndpoint)), Region: strings.TrimSpace(env(AWSRegion)), QueuePrefix: strings.TrimSpace(env(SQSQueuePrefix))}
	if c.SQS.Region == "" {
		c.SQS.Region = strings.TrimSpace(env("AWS_DEFAULT_REGION"))
	}
	switch create := strings.ToLower(strings.TrimSpace(env(SQSCreateQueues))); create {
	case "", "false":
	case "true":
		c.SQS.CreateQueues = true
	default:
		return false, fmt.Errorf("%s is %q; it must be true or false", SQSCreateQueues, create)
	}
	switch bus {
	case "":
		if c.SQS.Endpoint != "" || c.SQS.CreateQueues || c.SQS.QueuePrefix != "" {
			return false, fmt.Errorf("%s, %s or %s is set but %s is not sqs", SQSEndpoint, SQSCreateQueues, SQSQueuePrefix, MessageBus)
		}
		return false, nil
	case "sqs":
	default:
		return false, fmt.Errorf("%s is %q; the only value it takes is sqs (Service Bus is chosen by %s)", MessageBus, bus, ServiceBusPrefix)
	}
	switch {
	case c.ServiceBus.Configured():
		return false, fmt.Errorf("%s=sqs and %s are both set: choose one message bus", MessageBus, ServiceBusPrefix)
	case c.Cosmos.Endpoint != "":
		return false, fmt.Errorf("%s=sqs: set %s to a connection string; %s__accountEndpoint needs an Azure identity, which does not exist on AWS", MessageBus, CosmosPrefix, CosmosPrefix)
	case c.Cosmos.ConnectionString == "":
		return false, fmt.Errorf("%s=sqs keeps the state in Cosmos DB: set %s to its connection string", MessageBus, CosmosPrefix)
	case c.SQS.Region == "":
		return false, fmt.Errorf("%s=sqs needs %s (Lambda sets it; elsewhere set it to the queues' region)", MessageBus, AWSRegion)
	}
	if !queuePrefix.MatchString(c.SQS.QueuePrefix) {
		return false, fmt.Errorf("%s %q must be at most 40 letters, digits, '-' or '_' (SQS queue names allow no more)", SQSQueuePrefix, c.SQS.QueuePrefix)
	}
	if e := c.SQS.Endpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return false, fmt.Errorf("%s %q must be a URL such as http://127.0.0.1:4100", SQSEndpoint, e)
		}
	}
	return true, nil
}

// queuePrefix leaves room in SQS's 80 characters for the longest queue
// name with its "-dlq.fifo".
var queuePrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{0,40}$`)

func connection(env func(string) string, prefix, endpointKey string) (Connection, error) {
	c := Connection{
		Prefix:           prefix,
		Endpoint:         strings.TrimSpace(env(prefix + "__" + endpointKey)),
		ConnectionString: strings.TrimSpace(env(prefix)),
		ClientID:         strings.TrimSpace(env(prefix + "__clientId")),
	}
	if c.Endpoint != "" && c.ConnectionString != "" {
		return c, fmt.Errorf("set either %s or %s__%s, not both", prefix, prefix, endpointKey)
	}
	switch cred := strings.TrimSpace(env(prefix + "__credential")); strings.ToLower(cred) {
	case "":
	case "managedidentity":
		c.ManagedIdentity = true
	default:
		return c, fmt.Errorf("%s__credential is %q; the only supported value is managedidentity", prefix, cred)
	}
	if c.ClientID != "" {
		c.ManagedIdentity = true
	}
	if (c.ManagedIdentity) && c.Endpoint == "" {
		return c, fmt.Errorf("%s__credential or __clientId is set but %s__%s is not", prefix, prefix, endpointKey)
	}
	return c, nil
}

func validEndpoints(c *Config) error {
	if e := c.Cosmos.Endpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%s__accountEndpoint %q must be a URL such as https://<account>.documents.azure.com:443/", CosmosPrefix, e)
		}
	}
	if e := c.ServiceBus.Endpoint; e != "" && (strings.Contains(e, "://") || strings.Contains(e, "/")) {
		return fmt.Errorf("%s__fullyQualifiedNamespace %q must be a host name such as <namespace>.servicebus.windows.net", ServiceBusPrefix, e)
	}
	if s := c.Cosmos.ConnectionString; s != "" && !strings.Contains(s, "AccountEndpoint=") {
		return fmt.Errorf("%s must be a connection string with AccountEndpoint= and AccountKey=", CosmosPrefix)
	}
	if s := c.ServiceBus.ConnectionString; s != "" && !strings.Contains(s, "Endpoint=sb://") {
		return fmt.Errorf("%s must be a connection string starting Endpoint=sb://", ServiceBusPrefix)
	}
	return nil
}

// OperatorKey names the setting that holds the fleet endpoints' bearer key.
const OperatorKey = "OPERATOR_KEY"

// AppSettings lists every setting the code reads when it runs in Azure, so
// a test can check that the infrastructure sets each one.
var AppSettings = []string{
	OperatorKey,
	CosmosPrefix + "__accountEndpoint",
	CosmosPrefix + "__credential",
	CosmosPrefix + "__clientId",
	ServiceBusPrefix + "__fullyQualifiedNamespace",
	ServiceBusPrefix + "__credential",
	ServiceBusPrefix + "__clientId",
	CosmosDatabase,
	ACSEndpoint,
	ACSEmailSender,
	ACSSMSSender,
	ACSClientID,
	WebPubSubEndpoint,
	WebPubSubHub,
	WebPubSubClientID,
}
