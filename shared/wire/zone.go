package wire

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang/geo/s2"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/geo"
)

// MaxZoneBytes bounds the body of PUT /api/serviceareas/{id} and
// /api/noflyzones/{id}: MaxZoneVertices positions written out in full
// precision fit in it with room to spare, and a zone document stays far
// below Cosmos DB's item limit of 2 MB of JSON
// (learn.microsoft.com/azure/cosmos-db/concepts-limits, "Per-item limits").
const MaxZoneBytes = 256 << 10

type zoneWire struct {
	Name      *string         `json:"name"`
	Geometry  json.RawMessage `json:"geometry"`
	ValidFrom *string         `json:"validFrom"`
	ValidTo   *string         `json:"validTo"`
}

type geometryWire struct {
	Type        *string         `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
	// BBox is allowed by RFC 7946 section 5 and ignored: the bounds are
	// computed from the coordinates.
	BBox json.RawMessage `json:"bbox"`
}

// ParseZone decodes and validates the body of a PUT of a service area or a
// no-fly zone: {name?, geometry, validFrom?, validTo?}, where geometry is a
// GeoJSON (RFC 7946) Polygon or MultiPolygon. Every ring must be closed,
// have at least four positions, no position equal to the one before it,
// no edge crossing another edge of its polygon, and enclose an area; holes
// must lie inside their polygon's boundary. Errors name the offending
// position, e.g. geometry.coordinates[0][3].
func ParseZone(kind domain.ZoneKind, id string, body []byte) (*domain.Zone, error) {
	if err := domain.ValidID("id", id); err != nil {
		return nil, err
	}
	if kind == domain.ServiceArea && id == domain.UnzonedArea {
		// Its summaries would merge with those of the pickups in no area.
		return nil, domain.Invalid("id", "%q is reserved: the summaries name the deliveries whose pickup lies in no service area so", id)
	}
	if len(body) > MaxZoneBytes {
		return nil, domain.TooLarge("body", "must be at most %d bytes", MaxZoneBytes)
	}
	var w zoneWire
	if err := DecodeStrictLarge(body, &w); err != nil {
		return nil, err
	}
	z := &domain.Zone{ID: id, Kind: kind}
	if w.Name != nil {
		if err := domain.ValidText("name", *w.Name, domain.MaxZoneNameLength); err != nil {
			return nil, err
		}
		z.Name = *w.Name
	}
	var err error
	if z.GeometryType, z.Polygons, err = ParseGeometry("geometry", w.Geometry); err != nil {
		return nil, err
	}
	if z.ValidFrom, z.ValidTo, err = parseInterval("validFrom", w.ValidFrom, "validTo", w.ValidTo); err != nil {
		return nil, err
	}
	return z, nil
}

// ParseGeometry decodes a GeoJSON Polygon or MultiPolygon given as field
// and validates it (see ParseZone).
func ParseGeometry(field string, raw json.RawMessage) (string, []domain.Polygon, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, domain.Invalid(field, "is required")
	}
	var g geometryWire
	if err := DecodeStrictLarge(raw, &g); err != nil {
		return "", nil, prefixed(field, err)
	}
	if g.Type == nil || (*g.Type != "Polygon" && *g.Type != "MultiPolygon") {
		return "", nil, domain.Invalid(field+".type", "must be Polygon or MultiPolygon")
	}
	coords := field + ".coordinates"
	if len(g.Coordinates) == 0 || string(g.Coordinates) == "null" {
		return "", nil, domain.Invalid(coords, "is required")
	}
	var tree any
	if err := json.Unmarshal(g.Coordinates, &tree); err != nil {
		return "", nil, domain.Invalid(coords, "must be an array of numbers nested as a %s's", *g.Type)
	}
	depth := 3 // Polygon: rings of positions of numbers
	if *g.Type == "MultiPolygon" {
		depth = 4
	}
	if err := checkCoordinates(coords, tree, depth, new(int)); err != nil {
		return "", nil, err
	}
	// The structure is sound, so orb's decoder takes it as it is.
	og, err := geojson.UnmarshalGeometry(raw)
	if err != nil {
		return "", nil, domain.Invalid(field, "is not a GeoJSON geometry")
	}
	var mp orb.MultiPolygon
	switch v := og.Geometry().(type) {
	case orb.Polygon:
		mp = orb.MultiPolygon{v}
	case orb.MultiPolygon:
		mp = v
	}
	if len(mp) > domain.MaxZonePolygons {
		return "", nil, domain.Invalid(coords, "must hold at most %d polygons", domain.MaxZonePolygons)
	}
	out := make([]domain.Polygon, len(mp))
	for i, p := range mp {
		path := coords // a Polygon's paths have no polygon index
		if *g.Type == "MultiPolygon" {
			path = fmt.Sprintf("%s[%d]", coords, i)
		}
		if out[i], err = checkPolygon(path, p); err != nil {
			return "", nil, err
		}
	}
	return *g.Type, out, nil
}

// checkCoordinates walks the decoded coordinates: arrays nested depth deep
// whose innermost arrays are positions of two or three numbers (RFC 7946
// section 3.1.1: longitude, latitude, optional altitude), within range,
// counting the positions against MaxZoneVertices.
func checkCoordinates(path string, v any, depth int, count *int) error {
	arr, ok := v.([]any)
	if !ok {
		return domain.Invalid(path, "must be an array")
	}
	if depth == 1 {
		if len(arr) < 2 || len(arr) > 3 {
			return domain.Invalid(path, "must be a position: [longitude, latitude] or [longitude, latitude, altitude]")
		}
		for i, n := range arr {
			if _, ok := n.(float64); !ok {
				return domain.Invalid(fmt.Sprintf("%s[%d]", path, i), "must be a number")
			}
		}
		if lon := arr[0].(float64); lon < -180 || lon > 180 {
			return domain.Invalid(path+"[0]", "must be a longitude between -180 and 180")
		}
		if lat := arr[1].(float64); lat < -90 || lat > 90 {
			return domain.Invalid(path+"[1]", "must be a latitude between -90 and 90")
		}
		if *count++; *count > domain.MaxZoneVertices {
			return domain.Invalid(path, "is one position too many: a zone may have at most %d", domain.MaxZoneVertices)
		}
		return nil
	}
	if len(arr) == 0 {
		return domain.Invalid(path, "must not be empty")
	}
	for i, e := range arr {
		if err := checkCoordinates(fmt.Sprintf("%s[%d]", path, i), e, depth-1, count); err != nil {
			return err
		}
	}
	return nil
}

// checkPolygon validates one polygon's rings on the sphere (s2, whose
// edges are great-circle arcs as the drones fly them) and returns them.
func checkPolygon(path string, p orb.Polygon) (domain.Polygon, error) {
	out := make(domain.Polygon, len(p))
	loops := make([]*s2.Loop, len(p))
	for r, ring := range p {
		rp := fmt.Sprintf("%s[%d]", path, r)
		if len(ring) < 4 {
			return nil, domain.Invalid(rp, "must have at least 4 positions")
		}
		if !ring.Closed() {
			return nil, domain.Invalid(fmt.Sprintf("%s[%d]", rp, len(ring)-1), "must repeat the ring's first position to close it")
		}
		pts := make([]s2.Point, 0, len(ring)-1)
		out[r] = make([]domain.Position, len(ring))
		for i, pt := range ring {
			out[r][i] = domain.Position(pt)
			if i == len(ring)-1 {
				break
			}
			if i > 0 && pt == ring[i-1] {
				return nil, domain.Invalid(fmt.Sprintf("%s[%d]", rp, i), "repeats the position before it")
			}
			pts = append(pts, s2.PointFromLatLng(s2.LatLngFromDegrees(pt[1], pt[0])))
		}
		l := s2.LoopFromPoints(pts)
		if err := l.Validate(); err != nil {
			return nil, domain.Invalid(rp, "is not a ring: %v", err)
		}
		// GeoJSON's winding rule is advice parsers should not enforce (RFC
		// 7946 section 3.1.6), so each ring is taken as the smaller of the
		// two regions it bounds.
		l.Normalize()
		loops[r] = l
	}
	// The edges of all rings of the polygon must not cross each other:
	// a ring that crosses itself, or a hole that crosses its boundary.
	if r, i, found := geo.FirstCrossing(loops); found {
		return nil, domain.Invalid(fmt.Sprintf("%s[%d][%d]", path, r, i+1), "makes an edge that crosses another edge of the polygon")
	}
	for r, l := range loops {
		if l.Area() < minRingSteradians {
			return nil, domain.Invalid(fmt.Sprintf("%s[%d]", path, r), "must enclose an area")
		}
	}
	for r, hole := range loops[1:] {
		if !loops[0].ContainsPoint(hole.Vertex(0)) {
			return nil, domain.Invalid(fmt.Sprintf("%s[%d]", path, r+1), "is a hole, so it must lie inside the polygon's first ring")
		}
	}
	return out, nil
}

// minRingSteradians is about 100 square metres on the Earth (10 m by
// 10 m), less than any place a zone is drawn round: a ring that encloses
// less is a line drawn twice or a point. On the sphere, positions along a
// parallel (one latitude) are not on one great circle, so such a "line"
// encloses a sliver between the arcs: 1 km of it at 47° north about 14 m².
const minRingSteradians = 100 / (6371008.8 * 6371008.8)

// prefixed puts field before the path of a decoding error.
func prefixed(field string, err error) error {
	e, ok := err.(*domain.Error)
	if !ok || e.Field == "" || e.Field == "body" {
		return domain.Invalid(field, "must be a GeoJSON object with type and coordinates")
	}
	e2 := *e
	e2.Field = field + "." + e.Field
	return &e2
}

// ZoneView is a zone as the API shows it.
type ZoneView struct {
	ID        string          `json:"id"`
	Name      string          `json:"name,omitempty"`
	Geometry  json.RawMessage `json:"geometry"`
	ValidFrom *time.Time      `json:"validFrom,omitempty"`
	ValidTo   *time.Time      `json:"validTo,omitempty"`
	// State is where now lies in the window: "upcoming", "inForce" or
	// "ended" (domain.Zone.State).
	State     string    `json:"state"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// NewZoneView returns the API's view of z at now, its geometry as GeoJSON of
// the type it was given as.
func NewZoneView(z *domain.Zone, now time.Time) ZoneView {
	mp := make(orb.MultiPolygon, len(z.Polygons))
	for i, p := range z.Polygons {
		mp[i] = make(orb.Polygon, len(p))
		for r, ring := range p {
			mp[i][r] = make(orb.Ring, len(ring))
			for j, pt := range ring {
				mp[i][r][j] = orb.Point(pt)
			}
		}
	}
	var g orb.Geometry = mp
	if z.GeometryType == "Polygon" && len(mp) == 1 {
		g = mp[0]
	}
	raw, _ := geojson.NewGeometry(g).MarshalJSON() // finite numbers always encode
	v := ZoneView{ID: z.ID, Name: z.Name, Geometry: raw, State: z.State(now), UpdatedAt: z.UpdatedAt}
	if !z.ValidFrom.IsZero() {
		v.ValidFrom = &z.ValidFrom
	}
	if !z.ValidTo.IsZero() {
		v.ValidTo = &z.ValidTo
	}
	return v
}
