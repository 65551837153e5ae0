package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/logctx"
)

func TestContextAttributesOnEveryLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := logctx.NewLogger(&buf, slog.LevelInfo)
	ctx := logctx.With(context.Background(), "correlationId", "c1", "function", "F")
	ctx = logctx.With(ctx, "deliveryId", "d1", "correlationId", "c2")
	log.InfoContext(ctx, "hello", "n", 1)
	log.DebugContext(ctx, "hidden")

	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.Equal(t, "hello", rec["msg"])
	assert.Equal(t, "c2", rec["correlationId"], "a repeated key replaces the earlier value")
	assert.Equal(t, "d1", rec["deliveryId"])
	assert.Equal(t, "F", rec["function"])
	assert.Equal(t, 1, bytes.Count(buf.Bytes(), []byte(`"correlationId"`)))
	assert.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("\n")), "debug is below the level")
}

func TestSplitLoggerSendsWarningsAndErrorsToHigh(t *testing.T) {
	t.Parallel()
	var low, high bytes.Buffer
	log := logctx.NewSplitLogger(&low, &high, slog.LevelDebug).With("function", "F")
	ctx := logctx.With(context.Background(), "correlationId", "c1")
	log.DebugContext(ctx, "debug line")
	log.InfoContext(ctx, "info line")
	log.WarnContext(ctx, "warn line")
	log.ErrorContext(ctx, "error line")

	msgs := func(b *bytes.Buffer) []string {
		var out []string
		for _, l := range bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n")) {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(l, &rec), string(l))
			assert.Equal(t, "c1", rec["correlationId"], "context attributes reach both streams")
			assert.Equal(t, "F", rec["function"], "logger attributes reach both streams")
			out = append(out, rec["msg"].(string))
		}
		return out
	}
	assert.Equal(t, []string{"debug line", "info line"}, msgs(&low))
	assert.Equal(t, []string{"warn line", "error line"}, msgs(&high))
	// The host takes a stderr line for a Warning only when it contains "warn".
	assert.Contains(t, strings.ToLower(strings.Split(high.String(), "\n")[0]), "warn")
}

func TestSplitLoggerKeepsTheLevel(t *testing.T) {
	t.Parallel()
	var low, high bytes.Buffer
	log := logctx.NewSplitLogger(&low, &high, slog.LevelWarn)
	log.Info("hidden")
	log.Warn("shown")
	assert.Empty(t, low.String())
	assert.Contains(t, high.String(), "shown")
}
