package cli

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	awslambda "github.com/aws/aws-lambda-go/lambda"

	"github.com/fabrikam/dronedelivery/handlers"
	"github.com/fabrikam/dronedelivery/shared/config"
	"github.com/fabrikam/dronedelivery/shared/functionapp/lambda"
)

// lambdaEnv is set by AWS Lambda (and by the Runtime Interface Emulator)
// in the environment of the bootstrap it starts.
const lambdaEnv = "AWS_LAMBDA_RUNTIME_API"

// lambdaMode serves invocations from the Lambda runtime API until the
// process ends, which is how Lambda stops it; it returns only an error of
// start-up.
func lambdaMode(ctx context.Context, app fs.FS, env func(string) string, log *slog.Logger) error {
	cfg, err := config.Load(env)
	if err != nil {
		return err
	}
	if !cfg.AWS {
		// The embedded backend would live and die with each instance.
		return fmt.Errorf("under AWS Lambda the state and the queues must outlive an instance: set %s=sqs and %s to a Cosmos DB connection string",
			config.MessageBus, config.CosmosPrefix)
	}
	opKey, _, err := operatorKey(env, false, "")
	if err != nil {
		return err
	}
	if opKey == "" {
		return fmt.Errorf("%s is not set: the template sets it from a secret; the fleet endpoints authenticate with it", OperatorKeySetting)
	}
	// No flags: Lambda starts the bootstrap bare, and nothing is seeded.
	parts, err := open(ctx, common{}, app, env, log, handlers.Config{OperatorKey: opKey})
	if err != nil {
		return err
	}
	defer parts.backend.Close()
	only, err := lambda.SelectFunction(parts.fns, env)
	if err != nil {
		return err
	}
	h, err := lambda.New(parts.reg, parts.fns, parts.backend.Bus, log, lambda.Options{Function: only, QueuePrefix: cfg.SQS.QueuePrefix})
	if err != nil {
		return err
	}
	serves := only
	if serves == "" {
		serves = "every function, by event"
	}
	log.Info("lambda runtime started", "serves", serves, "backend", parts.backend.Name)
	awslambda.StartWithOptions(h.Invoke, awslambda.WithContext(ctx))
	return nil
}
