package wire_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

const validBody = `{
  "deliveryId": "d-1",
  "ownerId": "owner-1",
  "pickupLocation": {"latitude": 47.61, "longitude": -122.34, "altitude": 10},
  "dropOffLocation": {"latitude": 47.62, "longitude": -122.35},
  "pickupTime": "2026-11-26T10:00:00Z",
  "deadline": "2026-11-26T12:00:00+01:00",
  "expedited": true,
  "confirmationRequired": "Picture",
  "packageInfo": {"packageId": "p-1", "size": "Medium", "weight": 2.5, "tag": "fragile"}
}`

func TestParseDeliveryRequestValid(t *testing.T) {
	t.Parallel()
	p, err := wire.ParseDeliveryRequest([]byte(validBody))
	require.NoError(t, err)
	assert.Equal(t, "d-1", p.DeliveryID)
	r := p.Request
	assert.Equal(t, "owner-1", r.OwnerID)
	assert.Equal(t, 47.61, r.PickupLocation.Latitude)
	require.NotNil(t, r.PickupLocation.Altitude)
	assert.Equal(t, 10.0, *r.PickupLocation.Altitude)
	assert.Equal(t, -122.35, r.DropoffLocation.Longitude)
	assert.Equal(t, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), r.PickupTime)
	assert.Equal(t, time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC), r.Deadline)
	assert.True(t, r.Expedited)
	assert.Equal(t, domain.ConfirmationPicture, r.ConfirmationRequired)
	assert.Equal(t, domain.PackageInfo{PackageID: "p-1", Size: domain.SizeMedium, Weight: 2.5, Tag: "fragile"}, r.PackageInfo)
	assert.Len(t, p.Hash, 64)
}

func TestParseDeliveryRequestBothSpellings(t *testing.T) {
	t.Parallel()
	lower := `{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},"dropoffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`
	upper := `{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`
	a, err := wire.ParseDeliveryRequest([]byte(lower))
	require.NoError(t, err)
	b, err := wire.ParseDeliveryRequest([]byte(upper))
	require.NoError(t, err)
	assert.Equal(t, 3.0, a.Request.DropoffLocation.Latitude)
	assert.Equal(t, a.Request, b.Request)
	assert.Equal(t, a.Hash, b.Hash, "the two spellings are the same request")
	assert.Equal(t, domain.ConfirmationNone, a.Request.ConfirmationRequired)
}

func TestParseDeliveryRequestInvalid(t *testing.T) {
	t.Parallel()
	base := `"pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4}`
	pkg := `"packageInfo":{"size":"Small","weight":1}`
	cases := []struct {
		name, body, field string
	}{
		{"malformed JSON", `{"ownerId":`, "body"},
		{"not an object", `[1,2]`, "body"},
		{"trailing data", `{"ownerId":"o",` + base + `,` + pkg + `} {}`, "body"},
		{"ownerId wrong type", `{"ownerId":5,` + base + `,` + pkg + `}`, "ownerId"},
		{"ownerId control chars", `{"ownerId":"a\u0000b",` + base + `,` + pkg + `}`, "ownerId"},
		{"unknown field", `{"ownerId":"o","color":"red",` + base + `,` + pkg + `}`, "color"},
		{"a member whose name does not print", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1,"a\u0000\u202eb":1}}`, "packageInfo.a\ufffd\ufffdb"},
		{"a member with a long name", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1,"` + strings.Repeat("x", 100) + `":1}}`, "packageInfo." + strings.Repeat("x", 64) + "…"},
		{"a member with an empty name", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1,"":1}}`, `packageInfo.""`},
		{"unknown field in packageInfo", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1,"color":1}}`, "packageInfo.color"},
		{"unknown field in a location", `{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2,"foo":3},"dropOffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "pickupLocation.foo"},
		{"a known name where it is unknown", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1,"LATITUDE":1}}`, "packageInfo.LATITUDE"},
		{"a field in another case is known", `{"OWNERID":"o","PickupLocation":{"Latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1,"tAg":"x","zz":1}}`, "packageInfo.zz"},
		{"missing pickup", `{"ownerId":"o","dropOffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "pickupLocation"},
		{"latitude 91", `{"ownerId":"o","pickupLocation":{"latitude":91,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "pickupLocation.latitude"},
		{"longitude -181", `{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":-181},` + pkg + `}`, "dropOffLocation.longitude"},
		{"latitude missing", `{"ownerId":"o","pickupLocation":{"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "pickupLocation.latitude"},
		{"location as string", `{"ownerId":"o","pickupLocation":"here","dropOffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "pickupLocation"},
		{"missing dropoff", `{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},` + pkg + `}`, "dropOffLocation"},
		{"both spellings", `{"ownerId":"o",` + base + `,"dropoffLocation":{"latitude":3,"longitude":4},` + pkg + `}`, "dropoffLocation"},
		{"missing packageInfo", `{"ownerId":"o",` + base + `}`, "packageInfo"},
		{"weight zero", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":0}}`, "packageInfo.weight"},
		{"weight negative", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":-1}}`, "packageInfo.weight"},
		{"weight huge", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":1e9}}`, "packageInfo.weight"},
		{"weight string", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Small","weight":"1"}}`, "packageInfo.weight"},
		{"unknown size", `{"ownerId":"o",` + base + `,"packageInfo":{"size":"Huge","weight":1}}`, "packageInfo.size"},
		{"missing size", `{"ownerId":"o",` + base + `,"packageInfo":{"weight":1}}`, "packageInfo.size"},
		{"bad packageId", `{"ownerId":"o",` + base + `,"packageInfo":{"packageId":"a/b","size":"Small","weight":1}}`, "packageInfo.packageId"},
		{"bad deliveryId", `{"deliveryId":"../x","ownerId":"o",` + base + `,` + pkg + `}`, "deliveryId"},
		{"bad pickupTime", `{"ownerId":"o","pickupTime":"tomorrow",` + base + `,` + pkg + `}`, "pickupTime"},
		{"deadline before pickup", `{"ownerId":"o","pickupTime":"2026-11-26T10:00:00Z","deadline":"2026-11-26T09:00:00Z",` + base + `,` + pkg + `}`, "deadline"},
		{"unknown confirmation", `{"ownerId":"o","confirmationRequired":"Smell",` + base + `,` + pkg + `}`, "confirmationRequired"},
		{"duplicate key", `{"ownerId":"o",` + base + `,` + pkg + `,"ownerId":"p"}`, "ownerId"},
		{"duplicate key in another case", `{"ownerId":"o",` + base + `,` + pkg + `,"OWNERID":"p"}`, "OWNERID"},
		{"duplicate nested key", `{` + base + `,"packageInfo":{"size":"Small","weight":1,"weight":900}}`, "packageInfo.weight"},
		{"duplicate key with a folded letter", `{` + base + `,"packageInfo":{"size":"Small","weight":1,"ſize":"Large"}}`, "packageInfo.ſize"},
		{"nesting", `{` + base + `,` + pkg + `,"tag":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "tag" + strings.Repeat("[0]", wire.MaxJSONDepth-1)},
		{"invalid UTF-8", "{\"packageInfo\":{\"size\":\"Small\",\"weight\":1,\"tag\":\"\xff\"}," + base + "}", "body"},
		{"number beyond float64", `{` + base + `,"packageInfo":{"size":"Small","weight":1e400}}`, "packageInfo.weight"},
		{"pickupTime before 2000", `{"pickupTime":"1999-12-31T23:59:59Z",` + base + `,` + pkg + `}`, "pickupTime"},
		{"pickupTime in year 9999", `{"pickupTime":"9999-12-31T23:00:00Z",` + base + `,` + pkg + `}`, "pickupTime"},
		{"deadline past year 9999 in UTC", `{"pickupTime":"2026-11-26T10:00:00Z","deadline":"9999-12-31T23:00:00-14:00",` + base + `,` + pkg + `}`, "deadline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := wire.ParseDeliveryRequest([]byte(tc.body))
			require.Error(t, err)
			assert.Equal(t, domain.EINVALID, domain.ErrorCode(err))
			assert.Equal(t, tc.field, domain.ErrorField(err), "error: %v", err)
		})
	}
}

func TestOwnerIsOptionalAndPartOfTheHash(t *testing.T) {
	t.Parallel()
	body := `{"pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`
	anon, err := wire.ParseDeliveryRequest([]byte(body))
	require.NoError(t, err)
	assert.Empty(t, anon.Request.OwnerID)
	named, err := wire.ParseDeliveryRequest([]byte(`{"ownerId":"acct-1",` + body[1:]))
	require.NoError(t, err)
	assert.Equal(t, "acct-1", named.Request.OwnerID)
	anon.SetOwner("acct-1")
	assert.Equal(t, named.Hash, anon.Hash, "naming the owner or leaving it to the key is the same request")
	anon.SetOwner("acct-2")
	assert.NotEqual(t, named.Hash, anon.Hash, "another owner's request differs")
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	p, err := wire.ParseDeliveryRequest([]byte(`{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`))
	require.NoError(t, err)
	now := time.Date(2026, 11, 26, 8, 30, 15, 500, time.UTC)
	r := p.Request
	r.Defaults(now, "d-9", 0)
	assert.Equal(t, now.Truncate(time.Second), r.PickupTime)
	assert.Equal(t, r.PickupTime.Add(domain.DefaultDeadline), r.Deadline)
	assert.Equal(t, "d-9", r.PackageInfo.PackageID)
}

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	e, err := wire.ParseEnvelope([]byte(`{"operation":"delivery","deliveryId":"d-1","correlationId":"c","attempt":2}`))
	require.NoError(t, err)
	assert.Equal(t, wire.OpDelivery, e.Operation)
	assert.Equal(t, 2, e.Attempt)
	// A field a newer build added is ignored, not refused (a tolerant
	// reader: old and new builds share the queues during a deploy).
	e, err = wire.ParseEnvelope([]byte(`{"operation":"delivery","deliveryId":"d-1","correlationId":"c","extra":{"x":[1]}}`))
	require.NoError(t, err)
	assert.Equal(t, "d-1", e.DeliveryID)
	for _, bad := range []string{`{`, `{"operation":"explode","deliveryId":"d"}`, `{"operation":"delivery","deliveryId":""}`, `{"operation":"delivery","deliveryId":"d","attempt":"2"}`,
		`{"operation":"delivery","deliveryId":"d","correlationId":"c","deliveryId":"e"}`, `{"operation":"delivery","deliveryId":"d","correlationId":"c"} {}`} {
		_, err := wire.ParseEnvelope([]byte(bad))
		assert.True(t, domain.IsPermanent(err), "%s: %v", bad, err)
	}
	// What is refused is named as the strict decoder names it.
	for bad, want := range map[string]string{
		`{"operation":"delivery","deliveryId":"d","attempt":"2"}`:                   "attempt: must be of type number",
		`{"operation":"delivery","deliveryId":"d","deliveryId":"e"}`:                "deliveryId: is given more than once",
		`{"operation":"delivery","deliveryId":"d"} {}`:                              "body: is not valid JSON",
		`{"operation":"delivery","deliveryId":"d`:                                   "body: is empty or truncated JSON",
		"{\"operation\":\"delivery\",\"deliveryId\":\"d\xff\"}":                     "body: must be valid UTF-8",
		`{"operation":"delivery","deliveryId":"d","versions":{"a":1,"a":2}}`:        "versions.a: is given more than once",
		`{"operation":"delivery","deliveryId":"d","generation":{"x":1}}`:            "generation: must be of type number",
		`{"operation":"delivery","deliveryId":"d","extra":[{"a":1},{"a":1,"a":2}]}`: "extra[1].a: is given more than once",
	} {
		_, err := wire.ParseEnvelope([]byte(bad))
		require.Error(t, err, bad)
		assert.Equal(t, want, domain.ErrorField(err)+": "+domain.ErrorMessage(err), bad)
	}
}

// hostileShape is a body whose one long name wraps a long array: a walk
// that spelt out each element's path would copy the name once per element.
func hostileShape(n int) []byte {
	return []byte(`{"` + strings.Repeat("k", n) + `":[` + strings.TrimSuffix(strings.Repeat("0,", n), ",") + `]}`)
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeStrictWorkGrowsWithTheBody: refusing a body costs memory in
// proportion to its size, not to its size squared (the 120 KB body here
// allocated 1.6 GB when every element's path was spelt out as it went).
// Bytes allocated are counted, not time, so the test does not depend on
// the machine's speed.
func TestDecodeStrictWorkGrowsWithTheBody(t *testing.T) {
	var v struct{}
	small, large := hostileShape(20_000), hostileShape(40_000)
	a := allocatedBy(func() { require.Error(t, wire.DecodeStrict(small, &v)) })
	b := allocatedBy(func() { require.Error(t, wire.DecodeStrict(large, &v)) })
	assert.Less(t, float64(b), 3*float64(a), "twice the body allocated %d bytes against %d", b, a)
	assert.Less(t, b, uint64(40*len(large)), "allocated %d bytes for a body of %d", b, len(large))
}

// TestSmallDocumentsRefuseLargeBodies: a body of one of the API's small
// documents above MaxJSONBytes is refused as too large before it is
// parsed, naming the body; the large documents take more.
func TestSmallDocumentsRefuseLargeBodies(t *testing.T) {
	big := hostileShape(wire.MaxJSONBytes / 2)
	_, err := wire.ParseDeliveryRequest(big)
	require.Error(t, err)
	assert.Equal(t, domain.ETOOLARGE, domain.ErrorCode(err))
	assert.Equal(t, "body", domain.ErrorField(err))
	var v struct{}
	err = wire.DecodeStrictLarge(big, &v)
	require.Error(t, err)
	assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "parsed, and refused for what it holds")
}

// TestDeliveryIDMustNotNameTheSummary: /api/deliveries/summary is the
// summary in any case, so no delivery may take that id.
func TestDeliveryIDMustNotNameTheSummary(t *testing.T) {
	for _, id := range []string{"summary", "Summary", "SUMMARY"} {
		_, err := wire.ParseDeliveryRequest([]byte(`{"deliveryId":"` + id + `","pickupLocation":{"latitude":47.6,"longitude":-122.3},"dropOffLocation":{"latitude":47.61,"longitude":-122.31},"packageInfo":{"size":"Small","weight":1}}`))
		require.Error(t, err, id)
		assert.Equal(t, "deliveryId", domain.ErrorField(err), id)
	}
}

// A null is refused with its path wherever the API's schema does not
// allow one, instead of being read as the field left out; where it does
// (a webhook removed, a pause without an end, a drone's home base that is
// its location), null still means what the schema says.
func TestNullIsRefusedWhereTheSchemaAllowsNone(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	req := `"pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4}`
	drone := `"location":{"latitude":1,"longitude":2},"maxPayloadKg":5,"maxPackageSize":"Small","rangeKm":10,"cruiseSpeedMps":12`
	refused := []struct {
		name, field string
		parse       func() error
	}{
		{"a request's deliveryId", "deliveryId", func() error {
			_, err := wire.ParseDeliveryRequest([]byte(`{"deliveryId":null,` + req + `,"packageInfo":{"size":"Small","weight":1}}`))
			return err
		}},
		{"a request's expedited", "expedited", func() error {
			_, err := wire.ParseDeliveryRequest([]byte(`{"expedited":null,` + req + `,"packageInfo":{"size":"Small","weight":1}}`))
			return err
		}},
		{"a package's tag", "packageInfo.tag", func() error {
			_, err := wire.ParseDeliveryRequest([]byte(`{` + req + `,"packageInfo":{"size":"Small","weight":1,"tag":null}}`))
			return err
		}},
		{"a location's altitude", "pickupLocation.altitude", func() error {
			_, err := wire.ParseDeliveryRequest([]byte(`{"pickupLocation":{"latitude":1,"longitude":2,"altitude":null},"dropOffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`))
			return err
		}},
		{"a pause's areaId", "areaId", func() error {
			_, err := wire.ParsePause("storm", []byte(`{"reason":"storm","areaId":null}`), now)
			return err
		}},
		{"a drone's status", "status", func() error {
			_, err := wire.ParseDrone("d-1", []byte(`{`+drone+`,"status":null}`))
			return err
		}},
		{"a zone's corner", "geometry.coordinates[0][1][0]", func() error {
			_, err := wire.ParseZone(domain.NoFlyZone, "z-1", []byte(`{"name":"Stadium","geometry":{"type":"Polygon","coordinates":[[[0,0],[null,0],[1,1],[0,0]]]}}`))
			return err
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse()
			require.Error(t, err)
			assert.Equal(t, domain.EINVALID, domain.ErrorCode(err), "%v", err)
			var e *domain.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.field, e.Field, "%v", err)
		})
	}

	p, err := wire.ParsePause("storm", []byte(`{"reason":"storm","until":null}`), now)
	require.NoError(t, err, "a pause without an end")
	assert.True(t, p.Until.IsZero())
	d, err := wire.ParseDrone("d-1", []byte(`{`+drone+`,"homeBase":null}`))
	require.NoError(t, err, "a home base at the drone's location")
	assert.Equal(t, d.Location, d.HomeBase)
	w, err := wire.ParseWebhookChange([]byte(`{"webhookUrl":null}`), false)
	require.NoError(t, err, "a webhook removed")
	assert.Empty(t, w.URL)
	_, err = wire.ParseDeliveryRequest([]byte(`{"deliveryId":"null",` + req + `,"packageInfo":{"size":"Small","weight":1,"tag":"null"}}`))
	assert.NoError(t, err, "the word inside a string is a string")
}

// RFC 3339 (section 5.6) allows a lower-case "t" and "z"; so do the times
// of a request, a report and a pause.
func TestTimesMayBeWrittenInLowerCase(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	want := time.Date(2026, 12, 5, 13, 30, 0, 500_000_000, time.UTC)
	p, err := wire.ParseDeliveryRequest([]byte(`{"pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},` +
		`"pickupTime":"2026-12-05t13:30:00.5z","packageInfo":{"size":"Small","weight":1}}`))
	require.NoError(t, err)
	assert.True(t, want.Equal(p.Request.PickupTime), "%v", p.Request.PickupTime)
	reports, err := wire.ParseTelemetry("d-1", []byte(`{"location":{"latitude":1,"longitude":2},"batteryPercent":50,"timestamp":"2026-12-05t13:30:00.5+00:00"}`),
		func(string, time.Time) error { return nil })
	require.NoError(t, err)
	assert.True(t, want.Equal(reports[0].Timestamp), "%v", reports[0].Timestamp)
	pause, err := wire.ParsePause("storm", []byte(`{"reason":"storm","until":"2026-12-05T13:30:00.5z"}`), now)
	require.NoError(t, err)
	assert.True(t, want.Equal(pause.Until), "%v", pause.Until)
}
