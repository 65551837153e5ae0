package topology

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The constants exist only because Go cannot declare constants from a file;
// these tests make topology.json win any disagreement.

func TestQueueConstantsMatchJSON(t *testing.T) {
	var fromJSON []string
	for _, q := range Spec.Queues {
		fromJSON = append(fromJSON, q.Name)
	}
	sameNames(t, "queue", "Queue", fromJSON)
	assert.Equal(t, fromJSON, Queues, "Queues, want the names of topology.json in order")
}

func TestContainerConstantsMatchJSON(t *testing.T) {
	var fromJSON []string
	for _, c := range Spec.Containers {
		fromJSON = append(fromJSON, c.Name)
	}
	sameNames(t, "container", "Container", fromJSON)
	assert.Equal(t, Spec.Containers, Containers, "Containers")
}

// declared returns the values of the string constants this package's
// files declare under names that begin with prefix, read from the source,
// so that a constant added there is compared without a list to keep.
func declared(t *testing.T, prefix string) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	require.NoError(t, err)
	var values []string
	for _, f := range pkgs["topology"].Files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				v := spec.(*ast.ValueSpec)
				for i, name := range v.Names {
					if !strings.HasPrefix(name.Name, prefix) || i >= len(v.Values) {
						continue
					}
					if lit, ok := v.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, err := strconv.Unquote(lit.Value)
						require.NoError(t, err)
						values = append(values, s)
					}
				}
			}
		}
	}
	require.NotEmpty(t, values, "no %s* constants found", prefix)
	return values
}

// sameNames fails unless the string constants of kind, named with
// prefix, and the names topology.json declares are the same set.
func sameNames(t *testing.T, kind, prefix string, fromJSON []string) {
	t.Helper()
	consts := declared(t, prefix)
	for _, c := range consts {
		assert.Contains(t, fromJSON, c, "constant %s %q is not declared in topology.json", kind, c)
	}
	for _, n := range fromJSON {
		assert.Contains(t, consts, n, "topology.json declares %s %q but no %s* constant names it", kind, n, prefix)
	}
}

func TestEveryQueueUsesMaxDeliveryCount(t *testing.T) {
	for _, q := range Spec.Queues {
		assert.Equal(t, MaxDeliveryCount, q.MaxDeliveryCount, "queue %s: maxDeliveryCount, but the embedded bus dead-letters after MaxDeliveryCount", q.Name)
	}
}

func TestQueueSpec(t *testing.T) {
	q, ok := QueueSpec(QueueDroneScheduled)
	require.True(t, ok, "QueueSpec(%q) found nothing", QueueDroneScheduled)
	require.Equal(t, QueueDroneScheduled, q.Name, "QueueSpec(%q)", QueueDroneScheduled)
	require.NotEmpty(t, q.LockDuration, "QueueSpec(%q): lockDuration", QueueDroneScheduled)
	_, ok = QueueSpec("no-such-queue")
	assert.False(t, ok, "QueueSpec found a queue that is not declared")
}

func TestJSONIsACopy(t *testing.T) {
	b := JSON()
	b[0] = 'x'
	assert.NotEqual(t, byte('x'), JSON()[0], "JSON() handed out the embedded bytes themselves")
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"PT1M":       time.Minute,
		"PT30S":      30 * time.Second,
		"PT0.5S":     500 * time.Millisecond,
		"PT10M":      10 * time.Minute,
		"P7D":        7 * 24 * time.Hour,
		"P1DT2H3M4S": 26*time.Hour + 3*time.Minute + 4*time.Second,
	} {
		got, err := ParseDuration(in)
		assert.NoError(t, err, "ParseDuration(%q)", in)
		assert.Equal(t, want, got, "ParseDuration(%q)", in)
	}
	for _, in := range []string{"", "P", "PT", "P1DT", "1M", "PT1X", "P1Y", "P1M", "00:01:00", "pt1m"} {
		_, err := ParseDuration(in)
		assert.Error(t, err, "ParseDuration(%q) succeeded; want an error", in)
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"unknown field":   {`{"queues":[],"containers":[],"topics":[]}`, "topics"},
		"no queues":       {`{"queues":[],"containers":[{"name":"a","partitionKey":"/id"}]}`, "no queues"},
		"duplicate queue": {queues(`{"name":"q-1","maxDeliveryCount":1,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"PT10M"},{"name":"q-1","maxDeliveryCount":1,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"PT10M"}`), `"q-1" is declared twice`},
		"bad queue name":  {queues(`{"name":"Q_1","maxDeliveryCount":1,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"PT10M"}`), `queue "Q_1"`},
		"zero deliveries": {queues(`{"name":"q-1","maxDeliveryCount":0,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"PT10M"}`), "maxDeliveryCount 0"},
		"lock too long":   {queues(`{"name":"q-1","maxDeliveryCount":1,"lockDuration":"PT6M","duplicateDetectionHistoryTimeWindow":"PT10M"}`), "lockDuration"},
		"window too long": {queues(`{"name":"q-1","maxDeliveryCount":1,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"P8D"}`), "duplicateDetectionHistoryTimeWindow"},
		"no lock":         {queues(`{"name":"q-1","maxDeliveryCount":1,"duplicateDetectionHistoryTimeWindow":"PT10M"}`), "lockDuration"},
		"bad key":         {containers(`{"name":"c","partitionKey":"id"}`), `partitionKey "id"`},
		"zero ttl":        {containers(`{"name":"c","partitionKey":"/id","defaultTtl":0}`), "defaultTtl 0"},
		"duplicate":       {containers(`{"name":"c","partitionKey":"/id"},{"name":"c","partitionKey":"/x"}`), `"c" is declared twice`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			assert.ErrorContains(t, err, tc.want, "Parse error")
		})
	}
}

func TestParseReadsDefaultTTL(t *testing.T) {
	top, err := Parse([]byte(containers(`{"name":"sessions","partitionKey":"/owner","defaultTtl":3600},{"name":"audit","partitionKey":"/id","defaultTtl":-1},{"name":"kept","partitionKey":"/id"}`)))
	require.NoError(t, err)
	want := []Container{{"sessions", "/owner", 3600}, {"audit", "/id", -1}, {"kept", "/id", 0}}
	assert.Equal(t, want, top.Containers, "Containers")
}

func queues(items string) string {
	return `{"queues":[` + items + `],"containers":[{"name":"c","partitionKey":"/id"}]}`
}

func containers(items string) string {
	return `{"queues":[{"name":"q-1","maxDeliveryCount":1,"lockDuration":"PT1M","duplicateDetectionHistoryTimeWindow":"PT10M"}],"containers":[` + items + `]}`
}
