package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocumentedCommands runs every curl command of README.md and docs/*.md,
// in the order a reader meets them (README, then the walkthrough in
// docs/using.md, then the other pages), against a started service, and
// requires each to reach it and be answered 2xx. The documents' addresses
// (the local default, an Azure app, $BASE) point at the test's service, and
// the variables they use ($KEY, $OPERATOR_KEY, a function key) are set as a
// reader would have set them, so an example that no longer matches the API
// fails here instead of in a newcomer's terminal.
func TestDocumentedCommands(t *testing.T) {
	t.Parallel()
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "the documented commands need curl (make test-deps installs it)")
	p := startServe(t, t.TempDir(), "-seed", "20")
	a := signUp(t, p.base)

	work := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(work, "operator.key"), []byte(e2eOperatorKey), 0o600))
	env := append(os.Environ(), "KEY="+a.key, "OPERATOR_KEY="+e2eOperatorKey, "FUNCTION_KEY=unused-here",
		"FKEY=unused-here", "BASE="+p.base+"/api")

	cmds := documentedCommands(t)
	require.GreaterOrEqual(t, len(cmds), 15, "the documents hold the curl examples")
	azureApp := regexp.MustCompile(`https://[a-z0-9-]+-<suffix>\.azurewebsites\.net`)
	for _, c := range cmds {
		line := strings.ReplaceAll(c.text, "http://127.0.0.1:7071", p.base)
		line = azureApp.ReplaceAllString(line, p.base)
		require.NotRegexp(t, `<[a-zA-Z]+>`, line, "%s: a placeholder the test cannot fill", c.where)
		// -w prints the status on a line of its own after whatever the
		// command prints; it goes right after "curl" so that a trailing
		// comment cannot swallow it.
		line = strings.Replace(line, "curl ", `curl -w '\n%{http_code}' `, 1)
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if !assert.NoError(t, err, "%s: %s\n%s", c.where, c.text, out) {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		status, err := strconv.Atoi(lines[len(lines)-1])
		if assert.NoError(t, err, "%s: no status in %q", c.where, out) {
			assert.True(t, status >= 200 && status < 300, "%s: %s\nanswered %d: %s", c.where, c.text, status, out)
		}
	}
	// The walkthrough cancelled its second delivery, as it says.
	resp := a.call(t, http.MethodGet, "/api/deliveries/order-1002", nil)
	assert.Equal(t, http.StatusOK, resp.Status)
	assert.Contains(t, string(resp.Body), `"stage":"Cancelled"`)
}

// documentedCommand is one curl command of a document and where it stands.
type documentedCommand struct {
	where string // file:line
	text  string
}

// documentedCommands reads the curl commands of README.md and docs/*.md
// from their shell code blocks, joining continued lines and quotes that
// span lines.
func documentedCommands(t *testing.T) []documentedCommand {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	require.NoError(t, err)
	sort.Slice(docs, func(i, j int) bool {
		// The walkthrough creates what later pages refer to.
		wi, wj := strings.HasSuffix(docs[i], "using.md"), strings.HasSuffix(docs[j], "using.md")
		if wi != wj {
			return wi
		}
		return docs[i] < docs[j]
	})
	var out []documentedCommand
	for _, path := range append([]string{filepath.Join("..", "README.md")}, docs...) {
		f, err := os.Open(path)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		inShell, n, start := false, 0, 0
		var cur strings.Builder
		for sc.Scan() {
			n++
			raw := sc.Text()
			trimmed := strings.TrimSpace(raw)
			if strings.HasPrefix(trimmed, "```") {
				inShell = !inShell && (trimmed == "```sh" || trimmed == "```bash" || trimmed == "```shell")
				cur.Reset()
				continue
			}
			if !inShell {
				continue
			}
			if cur.Len() == 0 {
				if !strings.HasPrefix(trimmed, "curl ") {
					continue
				}
				start = n
			} else {
				cur.WriteString("\n")
			}
			cur.WriteString(trimmed)
			text := cur.String()
			if strings.HasSuffix(text, `\`) || strings.Count(text, "'")%2 == 1 {
				continue // the command goes on
			}
			out = append(out, documentedCommand{where: fmt.Sprintf("%s:%d", filepath.Base(path), start), text: text})
			cur.Reset()
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return out
}
