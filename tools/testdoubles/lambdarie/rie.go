// Package lambdarie runs the AWS Lambda Runtime Interface Emulator. It is a test tool.
package lambdarie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// The Lambda Runtime Interface Emulator.
const (
	riePackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	// The RIE's tagged versions are not on the proxy; this pseudo-version is.
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
	rieBinary  = "aws-lambda-rie"
)

// RIE is a Lambda bootstrap running under the AWS Lambda Runtime Interface
// Emulator, which serves the runtime API to the bootstrap and takes
// invocations on one HTTP endpoint, as Lambda's own front end does.
type RIE struct {
	// URL is the invocation endpoint.
	URL  string
	logs *testdoubles.LockedBuffer
}

// rieInvokePath is where the emulator takes invocations.
const rieInvokePath = "/2015-03-31/functions/function/invocations"

// StartRIE runs bootstrap under the emulator for the duration of the test.
// A non-empty handler is passed as the Lambda handler setting (_HANDLER);
// env is added to the bootstrap's environment. The emulator starts the
// bootstrap on the first invocation, as Lambda does on a cold start.
func StartRIE(t testing.TB, bootstrap, handler string, env []string) *RIE {
	t.Helper()
	bin := testdoubles.InstallGoTool(t, riePackage, rieVersion, rieBinary)
	var last string
	for range 3 {
		invokePort, apiPort := testdoubles.FreePort(t), testdoubles.FreePort(t)
		args := []string{
			"--runtime-interface-emulator-address", testdoubles.Loopback(invokePort),
			"--runtime-api-address", testdoubles.Loopback(apiPort),
			"--log-level", "info",
			bootstrap,
		}
		if handler != "" {
			args = append(args, handler)
		}
		cmd := exec.Command(bin, args...)
		cmd.Dir = t.TempDir()
		testdoubles.DieWithTest(cmd)
		// The emulator hands its environment to the bootstrap, minus the
		// names Lambda reserves; the function's timeout is generous so a
		// loaded machine does not fail an invocation.
		cmd.Env = append(append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=60"), env...)
		logs, done, stop := testdoubles.Background(t, cmd, "the Lambda Runtime Interface Emulator")
		r := &RIE{URL: "http://" + testdoubles.Loopback(invokePort) + rieInvokePath, logs: logs}
		if r.listening(done, 30*time.Second) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("emulator and bootstrap output:\n%s", logs.String())
				}
			})
			return r
		}
		stop()
		last = logs.String()
	}
	t.Fatalf("the Lambda Runtime Interface Emulator did not start:\n%s", last)
	return nil
}

// listening waits until the invocation port accepts connections; a GET is
// answered (with an error status) without starting the bootstrap.
func (r *RIE) listening(done <-chan struct{}, within time.Duration) bool {
	return testdoubles.Poll(done, within, func() bool {
		resp, err := http.Get(r.URL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// Invoke sends one event and returns the function's answer. A function
// error comes back as a 200 with an errorMessage body, as Lambda's
// synchronous invoke API answers it; the caller decides.
func (r *RIE) Invoke(t testing.TB, event any) json.RawMessage {
	t.Helper()
	body, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 90 * time.Second}
	resp, err := client.Post(r.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, r.Logs())
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %s: %s\n%s", resp.Status, out, r.Logs())
	}
	if resp.Header.Get("X-Amz-Function-Error") != "" || bytes.HasPrefix(out, []byte(`{"errorMessage"`)) {
		t.Fatalf("the function failed: %s\n%s", out, r.Logs())
	}
	return out
}

// Logs is what the emulator and the bootstrap wrote so far.
func (r *RIE) Logs() string { return r.logs.String() }

// String names the emulator for failure messages.
func (r *RIE) String() string { return fmt.Sprintf("RIE at %s", r.URL) }
