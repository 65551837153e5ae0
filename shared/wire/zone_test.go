package wire_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

const square = `[[-122.35,47.60],[-122.33,47.60],[-122.33,47.62],[-122.35,47.62],[-122.35,47.60]]`

var zoneSeeds = []string{
	`{"name":"Stadium","geometry":{"type":"Polygon","coordinates":[` + square + `]}}`,
	`{"geometry":{"type":"Polygon","coordinates":[` + square + `,[[-122.345,47.605],[-122.345,47.615],[-122.335,47.615],[-122.335,47.605],[-122.345,47.605]]]},"validFrom":"2026-12-01T10:00:00Z","validTo":"2026-12-01T12:00:00Z"}`,
	`{"geometry":{"type":"MultiPolygon","coordinates":[[` + square + `],[[[10,10],[11,10],[11,11,5],[10,10]]]],"bbox":[1,2,3,4]}}`,
	`{"geometry":{"type":"Polygon","coordinates":[[[179.5,0],[-179.5,0],[-179.5,1],[179.5,1],[179.5,0]]]}}`,
	`{"geometry":{"type":"Point","coordinates":[1,2]}}`, `{"geometry":null}`, `{}`, `[]`,
	`{"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}`,
}

func TestParseZoneValid(t *testing.T) {
	t.Parallel()
	z, err := wire.ParseZone(domain.NoFlyZone, "stadium", []byte(zoneSeeds[1]))
	require.NoError(t, err)
	assert.Equal(t, "stadium", z.ID)
	assert.Equal(t, domain.NoFlyZone, z.Kind)
	assert.Equal(t, "Polygon", z.GeometryType)
	require.Len(t, z.Polygons, 1)
	assert.Len(t, z.Polygons[0], 2, "the boundary and its hole")
	assert.Equal(t, domain.Position{-122.35, 47.60}, z.Polygons[0][0][0])
	assert.Equal(t, "2026-12-01T12:00:00Z", z.ValidTo.Format("2006-01-02T15:04:05Z07:00"))

	m, err := wire.ParseZone(domain.ServiceArea, "two", []byte(zoneSeeds[2]))
	require.NoError(t, err)
	assert.Equal(t, "MultiPolygon", m.GeometryType)
	assert.Len(t, m.Polygons, 2)

	_, err = wire.ParseZone(domain.NoFlyZone, "dateline", []byte(zoneSeeds[3]))
	require.NoError(t, err, "a ring across the antimeridian is a small ring on the sphere")
}

func TestParseZoneInvalid(t *testing.T) {
	t.Parallel()
	geom := func(typ, coords string) string {
		return `{"geometry":{"type":"` + typ + `","coordinates":` + coords + `}}`
	}
	var many strings.Builder
	many.WriteString("[[")
	for i := range domain.MaxZoneVertices + 1 {
		fmt.Fprintf(&many, "[%g,0],", float64(i)/1e4)
	}
	many.WriteString("[0,0]]]")
	for _, tc := range []struct {
		name, body, field string
	}{
		{"no geometry", `{"name":"x"}`, "geometry"},
		{"point", geom("Point", "[1,2]"), "geometry.type"},
		{"no type", `{"geometry":{"coordinates":[]}}`, "geometry.type"},
		{"unknown member", `{"geometry":{"type":"Polygon","coordinates":[` + square + `],"crs":1}}`, "geometry.crs"},
		{"no coordinates", `{"geometry":{"type":"Polygon"}}`, "geometry.coordinates"},
		{"not nested", geom("Polygon", "[[1,2],[3,4]]"), "geometry.coordinates[0][0]"},
		{"short position", geom("Polygon", "[[[1,2],[3,4],[5],[1,2]]]"), "geometry.coordinates[0][2]"},
		{"string", geom("Polygon", `[[[1,2],[3,"4"],[5,6],[1,2]]]`), "geometry.coordinates[0][1][1]"},
		{"longitude", geom("Polygon", "[[[1,2],[3,4],[181,6],[1,2]]]"), "geometry.coordinates[0][2][0]"},
		{"latitude", geom("Polygon", "[[[1,2],[3,-91],[5,6],[1,2]]]"), "geometry.coordinates[0][1][1]"},
		{"three positions", geom("Polygon", "[[[1,2],[3,4],[1,2]]]"), "geometry.coordinates[0]"},
		{"open ring", geom("Polygon", "[[[1,2],[3,4],[5,6],[7,8]]]"), "geometry.coordinates[0][3]"},
		{"repeated position", geom("Polygon", "[[[1,2],[3,4],[3,4],[5,7],[1,2]]]"), "geometry.coordinates[0][2]"},
		{"no area", geom("Polygon", "[[[0,0],[1,0],[2,0],[0,0]]]"), "geometry.coordinates[0]"},
		{"a line along a parallel", geom("Polygon", "[[[-122.334,47.594],[-122.33,47.594],[-122.32,47.594],[-122.334,47.594]]]"), "geometry.coordinates[0]"},
		{"bow tie", geom("Polygon", "[[[0,0],[1,1],[1,0],[0,1],[0,0]]]"), "geometry.coordinates[0][1]"},
		{"hole outside", geom("Polygon", "[["+square[1:len(square)-1]+"],[[10,10],[11,10],[11,11],[10,10]]]"), "geometry.coordinates[1]"},
		{"multipolygon path", geom("MultiPolygon", "[["+square+"],[[[1,2],[3,4],[1,2]]]]"), "geometry.coordinates[1][0]"},
		{"empty", geom("MultiPolygon", "[]"), "geometry.coordinates"},
		{"too many vertices", geom("Polygon", many.String()), fmt.Sprintf("geometry.coordinates[0][%d]", domain.MaxZoneVertices)},
		{"window", `{"geometry":{"type":"Polygon","coordinates":[` + square + `]},"validFrom":"2026-12-01T10:00:00Z","validTo":"2026-12-01T10:00:00Z"}`, "validTo"},
		{"bad time", `{"geometry":{"type":"Polygon","coordinates":[` + square + `]},"validFrom":"tomorrow"}`, "validFrom"},
		{"name", `{"name":"a\u0000b","geometry":{"type":"Polygon","coordinates":[` + square + `]}}`, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.ParseZone(domain.NoFlyZone, "z", []byte(tc.body))
			require.Error(t, err)
			assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "%v", err)
			assert.Equal(t, tc.field, domain.ErrorField(err), "%v", err)
		})
	}
	_, err := wire.ParseZone(domain.NoFlyZone, "z", []byte(`{"name":"`+strings.Repeat("x", wire.MaxZoneBytes)+`"}`))
	assert.Equal(t, domain.ETOOLARGE, domain.ErrorCode(err))
	_, err = wire.ParseZone(domain.NoFlyZone, "a/b", []byte(zoneSeeds[0]))
	assert.Equal(t, "id", domain.ErrorField(err))
	// The bucket of the pickups in no area is not an area's to take.
	_, err = wire.ParseZone(domain.ServiceArea, domain.UnzonedArea, []byte(zoneSeeds[0]))
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "%v", err)
	assert.Equal(t, "id", domain.ErrorField(err))
	_, err = wire.ParseZone(domain.NoFlyZone, domain.UnzonedArea, []byte(zoneSeeds[0]))
	assert.NoError(t, err, "a no-fly zone may have any id")
}

// FuzzParseZone holds the zone decoder to the properties of the other
// decoders: no panic, only client errors, and what it accepts comes back
// the same through the API's view of it.
func FuzzParseZone(f *testing.F) {
	addSeeds(f, zoneSeeds)
	f.Fuzz(func(t *testing.T, body []byte) {
		z, err := wire.ParseZone(domain.NoFlyZone, "z", body)
		if err != nil {
			if domain.ErrorCode(err) != domain.ETOOLARGE {
				mustBeInvalid(t, err, body)
			}
			return
		}
		v := wire.NewZoneView(z, time.Now())
		m := map[string]any{"geometry": v.Geometry}
		if v.Name != "" {
			m["name"] = v.Name
		}
		if v.ValidFrom != nil {
			m["validFrom"] = v.ValidFrom
		}
		if v.ValidTo != nil {
			m["validTo"] = v.ValidTo
		}
		encoded, _ := json.Marshal(m)
		again, err := wire.ParseZone(domain.NoFlyZone, "z", encoded)
		if err != nil || !reflect.DeepEqual(z, again) {
			t.Fatalf("%q re-encoded as %s decodes to %+v, %v; want %+v", body, encoded, again, err, z)
		}
	})
}
