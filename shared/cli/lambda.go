package cli

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	awslambda "github.com/aws/aws-lambda-go/lambda"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/adapters/sys"
	"github.com/fabrikam/dronedelivery/shared/backend"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/runtime"
	"github.com/fabrikam/dronedelivery/shared/runtime/lambda"
)

// lambdaEnv is set by AWS Lambda (and by the Runtime Interface Emulator)
// in the environment of the bootstrap it starts.
const lambdaEnv = "AWS_LAMBDA_RUNTIME_API"

// lambdaMode serves invocations from the Lambda runtime API until the
// process ends, which is how Lambda stops it; it returns only an error of
// start-up.
func lambdaMode(ctx context.Context, app fs.FS, env func(string) string, log *slog.Logger) error {
	fns, err := runtime.LoadFunctions(app, "functions")
	if err != nil {
		return err
	}
	only, err := lambda.SelectFunction(fns, env)
	if err != nil {
		return err
	}
	cfg, err := config.Load(env)
	if err != nil {
		return err
	}
	if !cfg.AWS {
		// The embedded backend would live and die with each instance.
		return fmt.Errorf("under AWS Lambda the state and the queues must outlive an instance: set %s=sqs and %s to a Cosmos DB connection string",
			config.MessageBus, config.CosmosPrefix)
	}
	b, err := backend.Open(ctx, cfg, backend.Options{Bootstrap: strings.EqualFold(env("COSMOS_BOOTSTRAP"), "true"), Log: log})
	if err != nil {
		return err
	}
	defer b.Close()
	reg := handlers.New(handlers.Deps{Store: b.Store, Bus: b.Bus, Clock: sys.Clock{}, IDs: sys.IDs{}, Log: log}).Registry()
	h, err := lambda.New(reg, fns, b.Bus, log, lambda.Options{Function: only, QueuePrefix: cfg.SQS.QueuePrefix})
	if err != nil {
		return err
	}
	serves := only
	if serves == "" {
		serves = "every function, by event"
	}
	log.Info("lambda runtime started", "serves", serves, "backend", b.Name)
	awslambda.StartWithOptions(h.Invoke, awslambda.WithContext(ctx))
	return nil
}
