package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/fabrikam/dronedelivery/shared/wire/sqsmsg"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/cosmosdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/lambdarie"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/otlpdouble"
	"github.com/fabrikam/dronedelivery/tools/testdoubles/sqsdouble"
)

// queuePrefix begins the SQS queue names in these tests, as the stack name
// does in infra/aws/template.yaml.
const queuePrefix = "e2e-"

// awsEnv starts the Cosmos DB and SQS doubles and returns the settings that
// point the binary at them, as Lambda's environment would point it at AWS.
func awsEnv(t *testing.T) (*sqsdouble.SQS, []string) {
	t.Helper()
	cosmos := cosmosdouble.StartCosmos(t)
	q := sqsdouble.StartSQS(t)
	return q, append(q.Env(),
		"CosmosDBConnection="+cosmos,
		fmt.Sprintf("COSMOS_DATABASE=aws%d", time.Now().UnixNano()),
		"COSMOS_BOOTSTRAP=true",
		"SQS_CREATE_QUEUES=true",
		"SQS_QUEUE_PREFIX="+queuePrefix,
		"OPERATOR_KEY="+e2eOperatorKey,
	)
}

// TestStandaloneChainOnSQS runs the chain scenario with the binary
// configured for AWS: SQS between the steps, Cosmos DB for the state.
func TestStandaloneChainOnSQS(t *testing.T) {
	t.Parallel()
	_, env := awsEnv(t)
	p := startServeEnv(t, t.TempDir(), env)
	if logs := p.logs.String(); !strings.Contains(logs, `"backend":"Cosmos DB (connection string`) || !strings.Contains(logs, "and SQS http://") {
		t.Fatalf("the binary did not open Cosmos DB and SQS:\n%s", logs)
	}
	chainScenario(t, p)
	p.stop(t)
}

// lambdaAPI is a client of the functions under the emulator: HTTP API
// events in, API Gateway responses out.
type lambdaAPI struct {
	key string // a business's API key, once signed up
}

func (a *lambdaAPI) call(t *testing.T, fn *lambdarie.RIE, method, path string, body any) events.APIGatewayV2HTTPResponse {
	t.Helper()
	rawPath, query, _ := strings.Cut(path, "?")
	e := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: rawPath, RawQueryString: query,
		Headers: map[string]string{"accept": "application/json", "user-agent": "e2e"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: "$default", Stage: "$default", RequestID: fmt.Sprintf("req-%d", time.Now().UnixNano()),
			DomainName: "e2e.execute-api.us-east-1.amazonaws.com", TimeEpoch: time.Now().UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: rawPath, Protocol: "HTTP/1.1", SourceIP: "198.51.100.7"},
		},
	}
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		e.Body = string(b)
		e.Headers["content-type"] = "application/json"
	}
	if a.key != "" {
		e.Headers["authorization"] = "Bearer " + a.key
	}
	var resp events.APIGatewayV2HTTPResponse
	require.NoError(t, json.Unmarshal(fn.Invoke(t, e), &resp))
	checkLambda(t, e, resp)
	return resp
}

// takeMessage receives the one message a step left on queue, as the event
// source mapping would, and shapes it as the SQS event Lambda would send.
func takeMessage(t *testing.T, q *sqsdouble.SQS, queue string) (events.SQSMessage, func()) {
	t.Helper()
	ctx := ctxFor(t)
	client := q.Client()
	name := sqsmsg.QueueName(queuePrefix, queue)
	url, err := client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	require.NoError(t, err, "queue %s", name)
	// A long poll that ends empty is asked again: how long the message takes
	// to show is not the test's business, only that one comes.
	var out *awssqs.ReceiveMessageOutput
	eventually(t, "a message on "+name, func() bool {
		out, err = client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl: url.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 10,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		require.NoError(t, err)
		return len(out.Messages) > 0
	})
	require.Len(t, out.Messages, 1, "one message on %s", name)
	m := out.Messages[0]
	rec := events.SQSMessage{
		MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes, MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSource: "aws:sqs", EventSourceARN: sqsdouble.QueueARN(name), AWSRegion: sqsdouble.SQSRegion,
	}
	for k, v := range m.MessageAttributes {
		rec.MessageAttributes[k] = events.SQSMessageAttribute{DataType: aws.ToString(v.DataType), StringValue: v.StringValue}
	}
	// What the event source mapping does after a successful invocation.
	remove := func() {
		_, err := client.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{QueueUrl: url.QueueUrl, ReceiptHandle: m.ReceiptHandle})
		require.NoError(t, err)
	}
	return rec, remove
}

func batchFailures(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var resp events.SQSEventResponse
	require.NoError(t, json.Unmarshal(raw, &resp), string(raw))
	out := []string{}
	for _, f := range resp.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

// TestLambdaUnderRuntimeInterfaceEmulator runs the binary as a Lambda
// bootstrap under the AWS Lambda Runtime Interface Emulator, three ways:
// pinned to ingest by the Lambda handler setting, pinned to scheduling by
// DRONEDELIVERY_FUNCTION, and routing every event itself. It takes a
// delivery in through an HTTP API event and carries it through the queue
// steps with SQS events built from what each step left on the SQS double.
func TestLambdaUnderRuntimeInterfaceEmulator(t *testing.T) {
	t.Parallel()
	q, env := awsEnv(t)

	seed := exec.Command(binary, "seed", "-seed", "30")
	seed.Env = append(os.Environ(), env...)
	out, err := seed.CombinedOutput()
	require.NoError(t, err, "seed the fleet: %s", out)

	// The bootstrap as make package-lambda builds it.
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-trimpath", "-tags", "lambda.norpc", "-o", bootstrap, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err = build.CombinedOutput()
	require.NoError(t, err, "build the bootstrap: %s", out)

	// The functions export their spans, each invocation's before it answers.
	rcv := otlpdouble.StartOTLPReceiver(t)
	env = append(env, otlpEnv(rcv)...)
	ingest := lambdarie.StartRIE(t, bootstrap, "IngestDelivery", env)
	schedule := lambdarie.StartRIE(t, bootstrap, "", append(env, "DRONEDELIVERY_FUNCTION=ScheduleDrone"))
	every := lambdarie.StartRIE(t, bootstrap, "", env)

	var a lambdaAPI
	resp := a.call(t, every, http.MethodPost, "/api/accounts", map[string]any{"name": "Fabrikam", "contactEmail": "ops@fabrikam.example"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
	var account struct{ AccountID, APIKey string }
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &account))
	a.key = account.APIKey

	// Ingest: the HTTP API event reaches the function the handler setting names.
	const id = "lambda-1"
	body := deliveryRequest(id, domain.Location{Latitude: 47.6065, Longitude: -122.3325}, domain.Location{Latitude: 47.612, Longitude: -122.34}, "Small", 1)
	body["ownerId"] = account.AccountID
	resp = a.call(t, ingest, http.MethodPost, "/api/deliveryrequests", body)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, resp.Body)
	assert.Equal(t, "/api/deliveries/"+id, resp.Headers["Location"])
	outsideTheAPI(t, func() {
		assert.Equal(t, http.StatusNotFound, a.call(t, ingest, http.MethodGet, "/api/healthz", nil).StatusCode,
			"a function pinned by the handler setting serves only its own route")
	})

	// Schedule: the message ingest left, with a record that cannot succeed
	// yet beside it; only that one is reported for retry.
	requested, done := takeMessage(t, q, topology.QueueDeliveryRequests)
	require.NotNil(t, requested.MessageAttributes[sqsmsg.AttrID].StringValue)
	assert.Equal(t, id+":requested", *requested.MessageAttributes[sqsmsg.AttrID].StringValue, "the port's message id rides as an attribute")
	ghost := requested
	ghost.MessageId, ghost.ReceiptHandle = "ghost-message", "ghost-receipt"
	// The ghost is no part of the delivery's trace.
	ghost.MessageAttributes = map[string]events.SQSMessageAttribute{}
	for k, v := range requested.MessageAttributes {
		if k != sqsmsg.AttrTraceParent && k != sqsmsg.AttrTraceState {
			ghost.MessageAttributes[k] = v
		}
	}
	ghost.Body = `{"operation":"delivery","deliveryId":"ghost-1","correlationId":"ghost"}`
	failures := batchFailures(t, schedule.Invoke(t, events.SQSEvent{Records: []events.SQSMessage{requested, ghost}}))
	assert.Equal(t, []string{"ghost-message"}, failures, "one bad record does not fail its batch")
	done()
	outsideTheAPI(t, func() {
		assert.Equal(t, http.StatusNotFound, a.call(t, schedule, http.MethodGet, "/api/healthz", nil).StatusCode,
			"a function pinned by DRONEDELIVERY_FUNCTION serves no route")
	})

	// The rest of the chain through the instance that routes by event.
	for _, queue := range []string{topology.QueueDroneScheduled, topology.QueuePackageUpdated} {
		rec, done := takeMessage(t, q, queue)
		assert.Empty(t, batchFailures(t, every.Invoke(t, events.SQSEvent{Records: []events.SQSMessage{rec}})), "step on %s", queue)
		done()
	}

	resp = a.call(t, every, http.MethodGet, "/api/deliveries/"+id, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	var d struct {
		Stage       domain.Stage `json:"stage"`
		DroneID     string       `json:"droneId"`
		PickupETA   *time.Time   `json:"pickupETA"`
		DeliveryETA *time.Time   `json:"deliveryETA"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &d))
	assert.Equal(t, domain.StageScheduled, d.Stage)
	assert.NotEmpty(t, d.DroneID)
	require.NotNil(t, d.PickupETA)
	require.NotNil(t, d.DeliveryETA)
	assert.True(t, d.DeliveryETA.After(*d.PickupETA))
	assert.Equal(t, http.StatusOK, a.call(t, every, http.MethodGet, "/api/healthz", nil).StatusCode)

	// The fleet endpoints take the operator key, as under the other runtimes.
	operator := lambdaAPI{key: e2eOperatorKey}
	resp = operator.call(t, every, http.MethodGet, "/api/drones?status=Assigned&limit=5", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	var page struct {
		Drones []domain.Drone `json:"drones"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &page))
	require.Len(t, page.Drones, 1, "one drone is assigned")
	assert.Equal(t, d.DroneID, page.Drones[0].ID)
	assert.Equal(t, http.StatusForbidden, a.call(t, every, http.MethodGet, "/api/drones", nil).StatusCode, "a business key is not the operator's")
	assert.Contains(t, every.Logs(), `"msg":"lambda runtime started"`)

	// One trace from the HTTP API event through the SQS events, across three
	// processes: the context rode the SQS message attributes.
	checkDeliveryTrace(t, rcv, rootOf(t, rcv, "IngestDelivery", id), id, "IngestDelivery", "ScheduleDrone", "UpdatePackage", "ComputeEta")
}
