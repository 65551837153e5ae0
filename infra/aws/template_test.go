package aws

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/topology"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// No SAM CLI or CloudFormation can run where these tests do, so they read
// the template as YAML; it writes intrinsic functions in their long form,
// which YAML reads as plain maps. Every check is a function of its inputs, so
// TestChecksCatchDrift can hand it a broken template and watch it fail.

type template struct {
	Globals struct {
		Function map[string]any `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]resource `yaml:"Resources"`
}

type resource struct {
	Type       string         `yaml:"Type"`
	Properties map[string]any `yaml:"Properties"`
}

func load(t *testing.T) (*template, []functionapp.FunctionConfig, topology.Topology) {
	t.Helper()
	raw, err := os.ReadFile("template.yaml")
	require.NoError(t, err)
	var tpl template
	require.NoError(t, yaml.Unmarshal(raw, &tpl), "template.yaml")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	fns, err := functionapp.LoadFunctions(os.DirFS(root), "functions")
	require.NoError(t, err)
	topo, err := topology.Parse(topology.JSON())
	require.NoError(t, err)
	return &tpl, fns, topo
}

// get walks nested maps by key.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func sub(s string) map[string]any    { return map[string]any{"Fn::Sub": s} }
func getAtt(r string) map[string]any { return map[string]any{"Fn::GetAtt": []any{r, "Arn"}} }
func same(want, got any) bool        { return reflect.DeepEqual(want, got) }

// lacking returns the items of want that the list got does not hold.
func lacking(want []any, got any) []any {
	list, _ := got.([]any)
	var out []any
	for _, w := range want {
		if !slices.ContainsFunc(list, func(g any) bool { return same(w, g) }) {
			out = append(out, w)
		}
	}
	return out
}
func queueLogicalID(queue string) string {
	var b strings.Builder
	for _, part := range strings.Split(queue, "-") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// checkGlobals holds every function to the bootstrap of make package-lambda
// and to the settings that choose SQS and Cosmos DB.
func checkGlobals(tpl *template) error {
	f := tpl.Globals.Function
	var errs []error
	want := map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "CodeUri": "../../dist/lambda.zip"}
	for k, v := range want {
		if !same(v, f[k]) {
			errs = append(errs, fmt.Errorf("Globals.Function.%s is %v, want %v", k, f[k], v))
		}
	}
	env, _ := get(f, "Environment", "Variables").(map[string]any)
	if env["MESSAGE_BUS"] != "sqs" {
		errs = append(errs, errors.New("Globals: MESSAGE_BUS must be sqs"))
	}
	if !same(sub("${AWS::StackName}-"), env["SQS_QUEUE_PREFIX"]) {
		errs = append(errs, errors.New("Globals: SQS_QUEUE_PREFIX must be the stack name and a dash, as the queue names begin"))
	}
	for _, k := range []string{"CosmosDBConnection", "COSMOS_DATABASE", "OPERATOR_KEY"} {
		if env[k] == nil {
			errs = append(errs, fmt.Errorf("Globals: %s is not set", k))
		}
	}
	return errors.Join(errs...)
}

// checkQueues holds the queues to topology.json: a FIFO queue each, locking
// for its lockDuration and redriving after maxDeliveryCount receives to its
// own FIFO dead-letter queue, named as the SQS adapter names them.
func checkQueues(tpl *template, topo topology.Topology) error {
	var errs []error
	timeout, _ := tpl.Globals.Function["Timeout"].(int)
	declared := map[string]bool{}
	for _, q := range topo.Queues {
		id := queueLogicalID(q.Name)
		main, dlq := tpl.Resources[id+"Queue"], tpl.Resources[id+"DeadLetterQueue"]
		declared[id+"Queue"], declared[id+"DeadLetterQueue"] = true, true
		if main.Type != "AWS::SQS::Queue" || dlq.Type != "AWS::SQS::Queue" {
			errs = append(errs, fmt.Errorf("queue %s: want resources %sQueue and %sDeadLetterQueue of type AWS::SQS::Queue", q.Name, id, id))
			continue
		}
		if !same(sub("${AWS::StackName}-"+q.Name+".fifo"), main.Properties["QueueName"]) ||
			!same(sub("${AWS::StackName}-"+q.Name+"-dlq.fifo"), dlq.Properties["QueueName"]) {
			errs = append(errs, fmt.Errorf("queue %s: names must be ${AWS::StackName}-%s.fifo and ${AWS::StackName}-%s-dlq.fifo", q.Name, q.Name, q.Name))
		}
		for _, r := range []resource{main, dlq} {
			if r.Properties["FifoQueue"] != true || r.Properties["ContentBasedDeduplication"] != false {
				errs = append(errs, fmt.Errorf("queue %s: both queues must be FIFO, deduplicating by message id", q.Name))
			}
		}
		lock, err := topology.ParseDuration(q.LockDuration)
		if want := max(int(lock.Seconds()), 6*timeout); err != nil || main.Properties["VisibilityTimeout"] != want {
			errs = append(errs, fmt.Errorf("queue %s: VisibilityTimeout %v, want %d: six times the functions' Timeout %d, at least the lockDuration %s",
				q.Name, main.Properties["VisibilityTimeout"], want, timeout, q.LockDuration))
		}
		rp, _ := main.Properties["RedrivePolicy"].(map[string]any)
		if !same(getAtt(id+"DeadLetterQueue"), rp["deadLetterTargetArn"]) || rp["maxReceiveCount"] != q.MaxDeliveryCount {
			errs = append(errs, fmt.Errorf("queue %s: RedrivePolicy %v, want %sDeadLetterQueue after %d receives", q.Name, rp, id, q.MaxDeliveryCount))
		}
	}
	for id, r := range tpl.Resources {
		if r.Type == "AWS::SQS::Queue" && !declared[id] {
			errs = append(errs, fmt.Errorf("queue resource %s is not in topology.json", id))
		}
	}
	return errors.Join(errs...)
}

// checkFunctions holds the functions to function.json: one Lambda function
// per function, pinned by DRONEDELIVERY_FUNCTION, with an HttpApi event per
// method at the route, or an SQS event on its queue reporting partial batch
// failures.
func checkFunctions(tpl *template, fns []functionapp.FunctionConfig) error {
	var errs []error
	names := map[string]bool{}
	timeout, _ := tpl.Globals.Function["Timeout"].(int)
	for _, fc := range fns {
		id := fc.Name + "Function"
		names[id] = true
		r, ok := tpl.Resources[id]
		if !ok || r.Type != "AWS::Serverless::Function" {
			errs = append(errs, fmt.Errorf("function %s: no AWS::Serverless::Function %s", fc.Name, id))
			continue
		}
		if got := get(r.Properties, "Environment", "Variables", "DRONEDELIVERY_FUNCTION"); got != fc.Name {
			errs = append(errs, fmt.Errorf("function %s: DRONEDELIVERY_FUNCTION is %v", fc.Name, got))
		}
		events, _ := r.Properties["Events"].(map[string]any)
		t := fc.Trigger()
		switch t.Type {
		case "httpTrigger":
			route := t.Route
			if route == "" {
				route = fc.Name
			}
			path := functionapp.RoutePattern(functionapp.RoutePrefix, route)
			var want, got []string
			for _, m := range fc.Methods() {
				want = append(want, m+" "+path)
			}
			for name, e := range events {
				if get(e, "Type") != "HttpApi" || !same(map[string]any{"Ref": "HttpApi"}, get(e, "Properties", "ApiId")) {
					errs = append(errs, fmt.Errorf("function %s: event %s must be an HttpApi event of HttpApi", fc.Name, name))
					continue
				}
				got = append(got, fmt.Sprint(get(e, "Properties", "Method"), " ", get(e, "Properties", "Path")))
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(want, got) {
				errs = append(errs, fmt.Errorf("function %s: routes %v, want %v", fc.Name, got, want))
			}
		case "serviceBusTrigger":
			if len(events) != 1 {
				errs = append(errs, fmt.Errorf("function %s: want exactly one SQS event, got %d events", fc.Name, len(events)))
				continue
			}
			qid := queueLogicalID(t.QueueName) + "Queue"
			for name, e := range events {
				types, _ := get(e, "Properties", "FunctionResponseTypes").([]any)
				batch, _ := get(e, "Properties", "BatchSize").(int)
				if get(e, "Type") != "SQS" || !same(getAtt(qid), get(e, "Properties", "Queue")) {
					errs = append(errs, fmt.Errorf("function %s: event %s must be an SQS event of %s", fc.Name, name, qid))
				}
				if !slices.Contains(types, any("ReportBatchItemFailures")) {
					errs = append(errs, fmt.Errorf("function %s: the SQS event must report partial batch failures", fc.Name))
				}
				if batch < 1 || batch > 10 {
					errs = append(errs, fmt.Errorf("function %s: BatchSize %d; FIFO queues deliver 1 to 10", fc.Name, batch))
				}
			}
			if q := tpl.Resources[qid]; timeout <= 0 || timeout > q.Properties["VisibilityTimeout"].(int) {
				errs = append(errs, fmt.Errorf("function %s: Timeout %d must not exceed its queue's VisibilityTimeout", fc.Name, timeout))
			}
		}
	}
	for id, r := range tpl.Resources {
		if r.Type == "AWS::Serverless::Function" && !names[id] {
			errs = append(errs, fmt.Errorf("function resource %s has no function.json", id))
		}
	}
	return errors.Join(errs...)
}

// deadLetterFunctions read and delete messages on the dead-letter queues.
var deadLetterFunctions = []string{"ListDeadLetters", "ReplayDeadLetter"}

// checkQueuePolicies holds the policies to the queues: QueueAccess names
// each of this stack's queues (a pattern on the stack's name would match
// another stack's), and the dead-letter endpoints may also receive and
// delete on every dead-letter queue, by DeadLetterAccess.
func checkQueuePolicies(tpl *template, topo topology.Topology) error {
	var errs []error
	var all, dlqs []any
	for _, q := range topo.Queues {
		id := queueLogicalID(q.Name)
		all = append(all, getAtt(id+"Queue"), getAtt(id+"DeadLetterQueue"))
		dlqs = append(dlqs, getAtt(id+"DeadLetterQueue"))
	}
	statement := func(policy string) map[string]any {
		st, _ := get(tpl.Resources[policy].Properties, "PolicyDocument", "Statement").([]any)
		if len(st) != 1 {
			return nil
		}
		m, _ := st[0].(map[string]any)
		return m
	}
	if st := statement("QueueAccess"); st == nil || !same(all, st["Resource"]) {
		errs = append(errs, fmt.Errorf("QueueAccess: one statement whose Resource is every queue's Arn, in topology.json's order; lacking %v", lacking(all, st["Resource"])))
	}
	st := statement("DeadLetterAccess")
	actions, _ := st["Action"].([]any)
	if st == nil || !same(dlqs, st["Resource"]) || !slices.Contains(actions, any("sqs:ReceiveMessage")) || !slices.Contains(actions, any("sqs:DeleteMessage")) {
		errs = append(errs, fmt.Errorf("DeadLetterAccess: one statement allowing sqs:ReceiveMessage and sqs:DeleteMessage on every dead-letter queue's Arn, in topology.json's order; lacking %v, got %v", lacking(dlqs, st["Resource"]), st))
	}
	for _, fn := range deadLetterFunctions {
		policies, _ := tpl.Resources[fn+"Function"].Properties["Policies"].([]any)
		if !slices.ContainsFunc(policies, func(p any) bool { return same(map[string]any{"Ref": "DeadLetterAccess"}, p) }) {
			errs = append(errs, fmt.Errorf("function %s: Policies %v lack DeadLetterAccess", fn, policies))
		}
	}
	return errors.Join(errs...)
}

func TestTemplateMatchesFunctionsAndTopology(t *testing.T) {
	t.Parallel()
	tpl, fns, topo := load(t)
	for _, err := range []error{checkGlobals(tpl), checkQueues(tpl, topo), checkFunctions(tpl, fns), checkQueuePolicies(tpl, topo)} {
		assert.NoError(t, err)
	}
}

// TestChecksCatchDrift breaks the inputs one way at a time and expects each
// check to notice, so that a check that silently passes everything fails.
func TestChecksCatchDrift(t *testing.T) {
	t.Parallel()
	tpl, fns, topo := load(t)
	fresh := func() *template { c, _, _ := load(t); return c }

	breakIt := []struct {
		name  string
		check func(*template) error
		edit  func(*template)
	}{
		{"a route moved", func(c *template) error { return checkFunctions(c, fns) }, func(c *template) {
			get(c.Resources["GetDeliveryFunction"].Properties, "Events", "Get", "Properties").(map[string]any)["Path"] = "/api/delivery/{id}"
		}},
		{"a function missing", func(c *template) error { return checkFunctions(c, fns) }, func(c *template) {
			delete(c.Resources, "HealthzFunction")
		}},
		{"partial batch failures off", func(c *template) error { return checkFunctions(c, fns) }, func(c *template) {
			delete(get(c.Resources["ScheduleDroneFunction"].Properties, "Events", "Queue", "Properties").(map[string]any), "FunctionResponseTypes")
		}},
		{"a queue not FIFO", func(c *template) error { return checkQueues(c, topo) }, func(c *template) {
			c.Resources["DeliveryRequestsQueue"].Properties["FifoQueue"] = false
		}},
		{"redrive count drifted", func(c *template) error { return checkQueues(c, topo) }, func(c *template) {
			c.Resources["DroneScheduledQueue"].Properties["RedrivePolicy"].(map[string]any)["maxReceiveCount"] = 3
		}},
		{"a visibility timeout under six function timeouts", func(c *template) error { return checkQueues(c, topo) }, func(c *template) {
			c.Resources["PackageUpdatedQueue"].Properties["VisibilityTimeout"] = 60
		}},
		{"queue access by a name pattern", func(c *template) error { return checkQueuePolicies(c, topo) }, func(c *template) {
			get(c.Resources["QueueAccess"].Properties, "PolicyDocument", "Statement").([]any)[0].(map[string]any)["Resource"] =
				sub("arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-*")
		}},
		{"dead letters unreadable", func(c *template) error { return checkQueuePolicies(c, topo) }, func(c *template) {
			c.Resources["ReplayDeadLetterFunction"].Properties["Policies"] = []any{map[string]any{"Ref": "QueueAccess"}}
		}},
		{"prefix dropped", checkGlobals, func(c *template) {
			delete(get(c.Globals.Function, "Environment", "Variables").(map[string]any), "SQS_QUEUE_PREFIX")
		}},
	}
	for _, b := range breakIt {
		require.NoError(t, b.check(tpl), "%s: the unbroken template fails already", b.name)
		c := fresh()
		b.edit(c)
		assert.Error(t, b.check(c), "%s: the check did not notice", b.name)
	}
}
