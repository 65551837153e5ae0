// Package sqsdouble starts the SQS stand-in: goaws behind a front that
// mends what it lacks. It is a test tool.
package sqsdouble

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// The account, region and keys the SQS double answers for; it checks no
// signatures, but the SDK signs every request and needs keys to do so.
const (
	SQSAccount   = "000000000000"
	SQSRegion    = "us-east-1"
	sqsAccessKey = "dronedelivery-test"
	sqsSecretKey = "dronedelivery-test-secret"
)

// goaws, the SQS-compatible server behind the double.
const (
	goawsPackage = "github.com/Admiral-Piett/goaws/app/cmd"
	goawsVersion = "v0.4.5"
	goawsBinary  = "cmd" // go install names a binary after its package folder
)

// SQS is a running SQS double: goaws, installed from the Go module proxy,
// behind a front in the test process that speaks the JSON protocol of
// aws-sdk-go-v2 and mends what goaws lacks (see sqsFront).
type SQS struct {
	// Endpoint is the front's URL, for SQS_ENDPOINT or a client's
	// BaseEndpoint.
	Endpoint string
}

// StartSQS starts goaws and the front for the duration of the test.
func StartSQS(t testing.TB) *SQS {
	t.Helper()
	bin := testdoubles.InstallGoTool(t, goawsPackage, goawsVersion, goawsBinary)
	goaws := startGoaws(t, bin)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	front := newSQSFront(goaws, base, SQSAccount, SQSRegion)
	srv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &SQS{Endpoint: base}
}

// startGoaws runs goaws on a free loopback port and returns its URL once
// it answers; a port taken in the meantime means another try.
func startGoaws(t testing.TB, bin string) string {
	t.Helper()
	var lastErr string
	for range 3 {
		port := testdoubles.FreePort(t)
		dir := t.TempDir()
		config := filepath.Join(dir, "goaws.yaml")
		yaml := fmt.Sprintf("Local:\n  Host: 127.0.0.1\n  Port: %d\n  AccountId: %q\n  EnableDuplicates: false\n"+
			"  QueueAttributeDefaults:\n    VisibilityTimeout: 30\n    ReceiveMessageWaitTimeSeconds: 0\n", port, SQSAccount)
		if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-config", config)
		cmd.Dir = dir
		testdoubles.DieWithTest(cmd)
		// goaws logs every message it handles; only the tail matters, and
		// only when a test fails.
		logs, done, stop := testdoubles.Background(t, cmd, "goaws")
		base := "http://" + testdoubles.Loopback(port)
		if waitHealthy(base+"/health", done, 30*time.Second) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					out := logs.String()
					t.Logf("goaws output (last 4000 bytes):\n%s", out[max(0, len(out)-4000):])
				}
			})
			return base
		}
		stop()
		lastErr = logs.String()
	}
	t.Fatalf("goaws did not start:\n%s", lastErr)
	return ""
}

// waitHealthy polls url until it answers 200, the process ends or the time
// is up.
func waitHealthy(url string, done <-chan struct{}, within time.Duration) bool {
	return testdoubles.Poll(done, within, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Env is what a process needs to reach the double: the settings that
// choose SQS, its endpoint, a region and keys for the SDK to sign with.
func (s *SQS) Env() []string {
	return []string{
		"MESSAGE_BUS=sqs",
		"SQS_ENDPOINT=" + s.Endpoint,
		"AWS_REGION=" + SQSRegion,
		"AWS_ACCESS_KEY_ID=" + sqsAccessKey,
		"AWS_SECRET_ACCESS_KEY=" + sqsSecretKey,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Client returns an SDK client of the double.
func (s *SQS) Client() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       SQSRegion,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(sqsAccessKey, sqsSecretKey, ""),
	})
}

// messageReceiver is the part of an SQS client Receive uses.
type messageReceiver interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
}

// Receive long-polls c until a message comes: a poll that ends empty is
// asked again, since how long a message takes to show is not what a test
// checks. An error fails the test.
func Receive(ctx context.Context, t testing.TB, c messageReceiver, in *sqs.ReceiveMessageInput) *sqs.ReceiveMessageOutput {
	t.Helper()
	in.WaitTimeSeconds = 5
	for {
		out, err := c.ReceiveMessage(ctx, in)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(out.Messages) > 0 {
			return out
		}
	}
}

// QueueARN is the ARN the double gives the named SQS queue, as a Lambda
// event's eventSourceARN carries it.
func QueueARN(name string) string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", SQSRegion, SQSAccount, name)
}
