// Package backend opens the store and bus the configuration names: Cosmos
// DB and Service Bus when they are configured, Cosmos DB and SQS when SQS is
// chosen (on AWS), otherwise the embedded backend (one SQLite file in a data
// folder).
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fabrikam/dronedelivery/shared/adapters/cosmos"
	"github.com/fabrikam/dronedelivery/shared/adapters/embedded"
	"github.com/fabrikam/dronedelivery/shared/adapters/servicebus"
	"github.com/fabrikam/dronedelivery/shared/adapters/sqs"
	"github.com/fabrikam/dronedelivery/shared/airspace"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/ports"
	"github.com/fabrikam/dronedelivery/shared/topology"
)

// Backend is an open store and bus.
type Backend struct {
	Store ports.Store
	Bus   ports.Bus
	// Airspace is the airspace kept in Store's zones, which dispatch
	// reads through (airspace.For).
	Airspace ports.Airspace
	Name     string // a human description, for logs and banners
	// Local is set when the bus is this process's own (the embedded
	// queues in the SQLite file): nothing outside it, such as the
	// Functions host's Service Bus triggers, delivers their messages.
	Local bool
	close func() error
}

// Close releases the backend.
func (b *Backend) Close() error { return b.close() }

// Options tunes what Open builds.
type Options struct {
	Embedded embedded.Options
	// Bootstrap creates the Cosmos DB database and containers when missing;
	// for local doubles and development only, as infrastructure creates them
	// in Azure (setting COSMOS_BOOTSTRAP=true turns it on from the command line).
	Bootstrap bool
	// CosmosPolicies are added to the Cosmos DB client's pipeline (tests
	// count operations with one).
	CosmosPolicies []policy.Policy
	Log            *slog.Logger
}

// Open opens the backend cfg names.
func Open(ctx context.Context, cfg *config.Config, opts Options) (*Backend, error) {
	if cfg.AWS {
		return openAWS(ctx, cfg, opts)
	}
	if !cfg.Azure {
		return OpenEmbedded(cfg.DataDir, opts.Embedded)
	}
	return openAzure(ctx, cfg, opts)
}

// EmbeddedFile is the embedded backend's SQLite file in its data folder.
const EmbeddedFile = "dronedelivery.db"

// OpenEmbedded opens (creating if needed) the embedded backend in dataDir.
func OpenEmbedded(dataDir string, opts embedded.Options) (*Backend, error) {
	if err := embedded.PrepareDir(dataDir); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, EmbeddedFile)
	db, err := embedded.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	return &Backend{Store: db.Store(), Bus: db.Bus(), Airspace: airspace.For(db.Store()), Name: "embedded SQLite at " + path, Local: true, close: db.Close}, nil
}

// openCosmos opens the Cosmos DB store cfg names, bootstrapping its
// database first when opts ask it to.
func openCosmos(ctx context.Context, cfg *config.Config, opts Options) (*cosmos.Store, error) {
	cc, err := cosmosClient(cfg.Cosmos, opts.CosmosPolicies)
	if err != nil {
		return nil, err
	}
	if opts.Bootstrap {
		if err := cosmos.Bootstrap(ctx, cc, cfg.Database); err != nil {
			return nil, fmt.Errorf("bootstrap cosmos database %s: %w", cfg.Database, err)
		}
	}
	return cosmos.Open(ctx, cc, cfg.Database, cosmos.Options{Logger: opts.Log})
}

func openAzure(ctx context.Context, cfg *config.Config, opts Options) (*Backend, error) {
	store, err := openCosmos(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	sc, err := serviceBusClient(cfg.ServiceBus)
	if err != nil {
		store.Close()
		return nil, err
	}
	bus := servicebus.New(sc, servicebus.Options{})
	name := fmt.Sprintf("Cosmos DB %s (database %s) and Service Bus %s", endpointOf(cfg.Cosmos), cfg.Database, endpointOf(cfg.ServiceBus))
	return &Backend{Store: store.Store(), Bus: bus, Airspace: airspace.For(store.Store()), Name: name, close: func() error {
		store.Close()
		return errors.Join(bus.Close(context.Background()), sc.Close(context.Background()))
	}}, nil
}

// openAWS opens Cosmos DB by connection string (there is no Azure identity
// on AWS) and SQS with the SDK's default credential chain: the function's
// role on Lambda, the usual AWS_* settings elsewhere.
func openAWS(ctx context.Context, cfg *config.Config, opts Options) (*Backend, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.SQS.Region))
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	store, err := openCosmos(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	client := awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) {
		if cfg.SQS.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.SQS.Endpoint)
		}
	})
	var create *sqs.QueueSettings
	if cfg.SQS.CreateQueues {
		create = sqsQueueSettings()
	}
	bus := sqs.New(client, sqs.Options{CreateQueues: create, QueuePrefix: cfg.SQS.QueuePrefix, Logger: opts.Log})
	where := cfg.SQS.Region
	if cfg.SQS.Endpoint != "" {
		where = cfg.SQS.Endpoint
	}
	name := fmt.Sprintf("Cosmos DB (connection string, database %s) and SQS %s", cfg.Database, where)
	return &Backend{Store: store.Store(), Bus: bus, Airspace: airspace.For(store.Store()), Name: name, close: func() error {
		store.Close()
		return bus.Close()
	}}, nil
}

// sqsQueueSettings gives created queues what topology.json gives Service
// Bus queues, so a local SQS locks and redrives as Azure and
// infra/aws/template.yaml do.
func sqsQueueSettings() *sqs.QueueSettings {
	s := &sqs.QueueSettings{MaxReceiveCount: topology.MaxDeliveryCount}
	for _, q := range topology.Spec.Queues {
		if d, err := topology.ParseDuration(q.LockDuration); err == nil {
			s.VisibilityTimeout = max(s.VisibilityTimeout, d)
		}
	}
	return s
}

func cosmosClient(c config.Connection, policies []policy.Policy) (*azcosmos.Client, error) {
	opts := &azcosmos.ClientOptions{}
	opts.PerCallPolicies = policies
	// The other Cosmos DB SDKs retry throttling nine times; three is azcore's
	// default and gives up too soon under a burst.
	opts.Retry.MaxRetries = 9
	// A try that gets no answer is cut after 10 s (azcore's
	// policy.RetryOptions.TryTimeout, off by default), so a gateway that
	// stopped responding does not hold a queue step for as long as the
	// connection stays open. The cut try is not tried again: azcosmos
	// v1.5.0's clientRetryPolicy returns a transport error whose request
	// context has ended as errorinfo.NonRetriableError
	// (cosmos_client_retry_policy.go), which azcore's retry policy does not
	// retry; the call fails EUNAVAILABLE and the step backs off as in any
	// outage. Point operations answer in milliseconds; 10 s leaves room for
	// a query's page. An HTTP function gives up at
	// functionapp.HandlerTimeout in any case.
	opts.Retry.TryTimeout = 10 * time.Second
	return sdkClient(c, "accountEndpoint",
		func(conn string) (*azcosmos.Client, error) { return azcosmos.NewClientFromConnectionString(conn, opts) },
		func(endpoint string, cred azcore.TokenCredential) (*azcosmos.Client, error) {
			return azcosmos.NewClient(endpoint, cred, opts)
		})
}

func serviceBusClient(c config.Connection) (*azservicebus.Client, error) {
	return sdkClient(c, "fullyQualifiedNamespace",
		func(conn string) (*azservicebus.Client, error) {
			return azservicebus.NewClientFromConnectionString(conn, servicebus.ClientOptions())
		},
		func(ns string, cred azcore.TokenCredential) (*azservicebus.Client, error) {
			return azservicebus.NewClient(ns, cred, servicebus.ClientOptions())
		})
}

// sdkClient makes an SDK client from a connection's connection string when
// it has one, and otherwise from its endpoint (the setting named
// <prefix>__<endpointSetting>) and identity.
func sdkClient[C any](c config.Connection, endpointSetting string, fromString func(string) (*C, error),
	fromIdentity func(string, azcore.TokenCredential) (*C, error)) (*C, error) {
	if c.ConnectionString != "" {
		client, err := fromString(c.ConnectionString)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Prefix, err)
		}
		return client, nil
	}
	cred, err := credential(c)
	if err != nil {
		return nil, err
	}
	client, err := fromIdentity(c.Endpoint, cred)
	if err != nil {
		return nil, fmt.Errorf("%s__%s: %w", c.Prefix, endpointSetting, err)
	}
	return client, nil
}

// credential resolves a connection's identity the way the Functions host
// does for its bindings: a user-assigned managed identity when a client id
// is given, the system-assigned one for credential=managedidentity, and
// otherwise DefaultAzureCredential (developer sign-in, workload identity…).
func credential(c config.Connection) (azcore.TokenCredential, error) {
	if c.ManagedIdentity {
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if c.ClientID != "" {
			opts.ID = azidentity.ClientID(c.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("%s managed identity: %w", c.Prefix, err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("%s: DefaultAzureCredential: %w", c.Prefix, err)
	}
	return cred, nil
}

func endpointOf(c config.Connection) string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return "(connection string)"
}
