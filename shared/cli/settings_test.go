package cli

import (
	"bytes"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
)

// TestSettingsThatDoNotParseStopStartUp: a numeric setting or LOG_LEVEL
// whose value does not parse stops the command before it starts, naming
// the setting, instead of leaving the default in force unsaid.
func TestSettingsThatDoNotParseStopStartUp(t *testing.T) {
	for key, value := range map[string]string{
		"MAX_BACKLOG": "abc", "MAX_STREAMS": "lots", "READ_TIMEOUT": "abc", "QUEUE_LOCK_DURATION": "-5s",
		"LOG_LEVEL": "verbose", PushKeepAliveSetting: "soon",
		"TRUST_FORWARDED_FOR": "yes", "SIMULATE": "yes", "COSMOS_BOOTSTRAP": "maybe", ConsumeEmbeddedQueuesSetting: "no",
	} {
		t.Run(key, func(t *testing.T) {
			t.Setenv(key, value)
			var stderr bytes.Buffer
			code := Main([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", t.TempDir()}, fstest.MapFS{}, &bytes.Buffer{}, &stderr)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr.String(), key+` is "`+value+`"`)
		})
	}
	assert.NoError(t, checkSettings(func(k string) string {
		return map[string]string{"MAX_STREAMS": "-1", "READ_TIMEOUT": "45s", "LOG_LEVEL": "debug", "SIMULATE": "1", "TRUST_FORWARDED_FOR": "TRUE", "COSMOS_BOOTSTRAP": "false"}[k]
	}), "-1 lifts a cap")
}
