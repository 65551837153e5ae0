package ports_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/ports"
)

func TestVersionsKeepTheNewestAndPassOnWhatTheStepDidNotTouch(t *testing.T) {
	t.Parallel()
	ctx, v := ports.WithVersions(context.Background(), `{"deliveries/a":"1","drones/x":"9"}`)
	got, ok := ports.CarriedVersion(ctx, "deliveries", "a")
	assert.True(t, ok)
	assert.Equal(t, "1", got)
	_, ok = ports.CarriedVersion(ctx, "deliveries", "b")
	assert.False(t, ok, "a document the message does not name")

	ports.NoteVersion(ctx, "deliveries", "a", "2")
	assert.JSONEq(t, `{"deliveries/a":"2","drones/x":"9"}`, v.Encode())
	got, _ = ports.CarriedVersion(ctx, "deliveries", "a")
	assert.Equal(t, "1", got, "what the message carried, not what the step wrote since")

	for i := range 6 {
		ports.NoteVersion(ctx, "deliveries", fmt.Sprint("n", i), "3")
	}
	assert.JSONEq(t, `{"deliveries/n2":"3","deliveries/n3":"3","deliveries/n4":"3","deliveries/n5":"3"}`, v.Encode(),
		"at most MaxCarriedVersions, the newest")

	msgs := []ports.Message{{ID: "m"}, {ID: "own", Versions: "kept"}}
	ports.StampVersions(ctx, msgs)
	assert.Equal(t, v.Encode(), msgs[0].Versions)
	assert.Equal(t, "kept", msgs[1].Versions)

	for _, bad := range []string{"{", `["x"]`, `{"a":"1","b":"2","c":"3","d":"4","e":"5"}`} {
		ctx, v := ports.WithVersions(context.Background(), bad)
		_, ok := ports.CarriedVersion(ctx, "deliveries", "a")
		assert.False(t, ok, bad)
		assert.Empty(t, v.Encode(), bad)
	}
	// Without a Versions in ctx, noting and stamping do nothing.
	ports.NoteVersion(context.Background(), "deliveries", "a", "1")
	none := []ports.Message{{ID: "m"}}
	ports.StampVersions(context.Background(), none)
	assert.Empty(t, none[0].Versions)
}
