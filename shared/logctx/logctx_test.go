package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
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
