package cli

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
)

// TestLambdaModeRefusesWhatCannotWork checks the start-up errors that keep
// a misconfigured function from serving: a backend that would vanish with
// the instance, and fleet endpoints nobody could call.
func TestLambdaModeRefusesWhatCannotWork(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(env map[string]string) error {
		return lambdaMode(context.Background(), fstest.MapFS{}, func(k string) string { return env[k] }, log)
	}
	assert.ErrorContains(t, run(map[string]string{}), "MESSAGE_BUS=sqs", "the embedded backend")
	aws := map[string]string{
		"MESSAGE_BUS": "sqs", "AWS_REGION": "eu-west-1",
		"CosmosDBConnection": "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=a2V5;",
	}
	assert.ErrorContains(t, run(aws), "OPERATOR_KEY")
	aws["OPERATOR_KEY"] = "short"
	assert.ErrorContains(t, run(aws), "OPERATOR_KEY", "the rules of the other runtimes hold")
}
