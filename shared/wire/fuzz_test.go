package wire_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// The fuzz targets hold every decoder of client or queue input to two
// properties: it never panics, and whatever it accepts encodes again (as
// the service stores and forwards it) and decodes to the same value. A
// crash or a counterexample found by `make fuzz` lands in testdata/fuzz and
// runs from then on as a regression test with the package's tests.

// seeds are bodies from the tests, valid and not, for the corpora.
var requestSeeds = []string{
	validBody,
	`{"ownerId":"o","pickupLocation":{"latitude":1,"longitude":2},"dropoffLocation":{"latitude":3,"longitude":4},"packageInfo":{"size":"Small","weight":1}}`,
	`{"pickupLocation":{"latitude":-90,"longitude":180,"altitude":-500},"dropOffLocation":{"latitude":90,"longitude":-180,"altitude":20000},"packageInfo":{"size":"Large","weight":1000,"tag":"✈ fragile"}}`,
	`{"pickupLocation":{"latitude":1,"longitude":2},"dropOffLocation":{"latitude":3,"longitude":4},"pickupTime":"2999-12-31T23:59:59.999999999Z","packageInfo":{"size":"Small","weight":1e-300}}`,
	`{"deliveryId":"a.b-c_d~e","pickupLocation":{"latitude":0,"longitude":-0},"dropOffLocation":{"latitude":0,"longitude":0},"deadline":"2026-11-26T12:00:00+14:00","packageInfo":{"packageId":"","size":"Medium","weight":0.1}}`,
	`{"ownerId":`, `[1,2]`, `null`, `{"ownerId":"o","color":"red"}`, `{"a":{"a":{"a":[[[[[]]]]]}}}`,
	`{"ownerId":"o","OWNERID":"p"}`, "{\"tag\":\"\xff\"}", `{"packageInfo":{"weight":1e400}}`,
}

// wireRequest is how a client would send r again.
func wireRequest(p *wire.ParsedRequest) []byte {
	r := p.Request
	m := map[string]any{
		"pickupLocation":       r.PickupLocation,
		"dropOffLocation":      r.DropoffLocation,
		"expedited":            r.Expedited,
		"confirmationRequired": r.ConfirmationRequired,
	}
	pkg := map[string]any{"size": r.PackageInfo.Size, "weight": r.PackageInfo.Weight, "tag": r.PackageInfo.Tag}
	if r.PackageInfo.PackageID != "" {
		pkg["packageId"] = r.PackageInfo.PackageID
	}
	m["packageInfo"] = pkg
	if p.DeliveryID != "" {
		m["deliveryId"] = p.DeliveryID
	}
	if r.OwnerID != "" {
		m["ownerId"] = r.OwnerID
	}
	if !r.PickupTime.IsZero() {
		m["pickupTime"] = r.PickupTime.Format(time.RFC3339Nano)
	}
	if !r.Deadline.IsZero() {
		m["deadline"] = r.Deadline.Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// mustBeInvalid fails unless err is a client error: a decoder that answers
// anything else for bad input would turn into a 500 or a retried message.
func mustBeInvalid(t *testing.T, err error, input []byte) {
	t.Helper()
	if code := domain.ErrorCode(err); code != domain.EINVALID {
		t.Fatalf("error %v has code %q, want %q, for %q", err, code, domain.EINVALID, input)
	}
}

func FuzzParseDeliveryRequest(f *testing.F) {
	addSeeds(f, requestSeeds)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := wire.ParseDeliveryRequest(body)
		if err != nil {
			mustBeInvalid(t, err, body)
			return
		}
		again, err := wire.ParseDeliveryRequest(wireRequest(p))
		if err != nil {
			t.Fatalf("accepted %q, but not its re-encoding %s: %v", body, wireRequest(p), err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("%q and its re-encoding decode differently:\n%+v\n%+v", body, p, again)
		}
		// What ingest stores and answers must encode: defaults included.
		p.Request.Defaults(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), "d", 0)
		if _, err := json.Marshal(domain.Delivery{Request: p.Request}); err != nil {
			t.Fatalf("accepted %q, but the delivery cannot be stored: %v", body, err)
		}
	})
}

func FuzzParseReschedule(f *testing.F) {
	addSeeds(f, []string{
		`{"pickupLocation":{"latitude":1,"longitude":2}}`, `{"dropoffLocation":{"latitude":1,"longitude":2},"deadline":"2026-11-26T12:00:00Z"}`,
		`{"pickupTime":"2026-11-26T10:00:00.5+01:00"}`, `{}`, `{"deadline":""}`, `{"pickupTime":"2000-01-01T00:00:00Z"}`,
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := wire.ParseReschedule(body)
		if err != nil {
			mustBeInvalid(t, err, body)
			return
		}
		m := map[string]any{}
		if r.PickupLocation != nil {
			m["pickupLocation"] = r.PickupLocation
		}
		if r.DropoffLocation != nil {
			m["dropOffLocation"] = r.DropoffLocation
		}
		if r.PickupTime != nil {
			m["pickupTime"] = r.PickupTime.Format(time.RFC3339Nano)
		}
		if r.Deadline != nil {
			m["deadline"] = r.Deadline.Format(time.RFC3339Nano)
		}
		encoded, _ := json.Marshal(m)
		again, err := wire.ParseReschedule(encoded)
		if err != nil || !reflect.DeepEqual(r, again) {
			t.Fatalf("%q re-encoded as %s decodes to %+v, %v; want %+v", body, encoded, again, err, r)
		}
	})
}

// FuzzParseTelemetry follows a report from the HTTP decoder, through the
// message the handler queues, to the queue decoder.
func FuzzParseTelemetry(f *testing.F) {
	for _, s := range []string{
		`{"location":{"latitude":1,"longitude":2},"batteryPercent":50,"timestamp":"2026-11-26T10:00:00Z"}`,
		`[{"location":{"latitude":1,"longitude":2,"altitude":3},"batteryPercent":0,"timestamp":"2026-11-26T10:00:00.123456789-07:00"},{"location":{"latitude":-1,"longitude":-2},"batteryPercent":100,"timestamp":"2999-12-31T23:59:59Z"}]`,
		`[]`, `{"location":{"latitude":-91,"longitude":2},"batteryPercent":1,"timestamp":"2026-11-26T10:00:00Z"}`,
		`{"location":"here","batteryPercent":1,"timestamp":"soon"}`,
	} {
		f.Add("drone-1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, droneID string, body []byte) {
		reports, err := wire.ParseTelemetry(droneID, body, nil)
		if err != nil {
			mustBeInvalid(t, err, body)
			return
		}
		for _, r := range reports {
			msg, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("accepted %q, but report %+v cannot be queued: %v", body, r, err)
			}
			got, err := wire.ParseTelemetryMessage(msg)
			if err != nil || !reflect.DeepEqual(&r, got) {
				t.Fatalf("queued %s decodes to %+v, %v; want %+v", msg, got, err, r)
			}
		}
	})
}

func FuzzParseTelemetryMessage(f *testing.F) {
	fuzzQueueDecoder(f, []string{
		`{"droneId":"d-1","location":{"latitude":1,"longitude":2},"batteryPercent":50,"timestamp":"2026-11-26T10:00:00Z"}`,
		`{"droneId":"","location":null,"batteryPercent":null,"timestamp":null}`, `{oops`, ``,
	}, wire.ParseTelemetryMessage, nil)
}

func FuzzParseEnvelope(f *testing.F) {
	fuzzQueueDecoder(f, []string{
		`{"operation":"delivery","deliveryId":"d-1","correlationId":"c","attempt":2}`,
		`{"operation":"notify","deliveryId":"d-1","correlationId":"c","notificationId":"d-1:n3"}`,
		`{"operation":"reschedule","deliveryId":"d-1","correlationId":"c","generation":4,"payload":{"ownerId":"o"}}`,
		`{"operation":"cancel","deliveryId":"d","correlationId":"","payload":null}`,
		`{`, `{"operation":"explode","deliveryId":"d"}`, `{"operation":"delivery","deliveryId":"d","extra":1}`,
		`{"operation":"delivery","deliveryId":"d","attempt":1e400}`, `{"operation":"delivery","deliveryId":"d","attempt":-1}`,
	}, wire.ParseEnvelope, func(t *testing.T, e *wire.Envelope) {
		// Encoding compacts a raw payload; the value is what must survive.
		if len(e.Payload) > 0 {
			var b bytes.Buffer
			if err := json.Compact(&b, e.Payload); err != nil {
				t.Fatalf("payload %q is not JSON: %v", e.Payload, err)
			}
			e.Payload = b.Bytes()
		}
	})
}

// fuzzQueueDecoder holds a queue message decoder to the properties of a
// queue: what it refuses is a permanent failure (no redelivery can make
// it succeed), and what it accepts encodes again and decodes to the same
// value, once encoded adjusts the value for what encoding changes on
// purpose (nil: nothing).
func fuzzQueueDecoder[T any](f *testing.F, seeds []string, parse func([]byte) (*T, error), encoded func(*testing.T, *T)) {
	addSeeds(f, seeds)
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := parse(body)
		if err != nil {
			if !domain.IsPermanent(err) {
				t.Fatalf("undecodable message %q is not a permanent failure: %v", body, err)
			}
			return
		}
		msg, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %q, which does not encode again: %v", body, err)
		}
		again, err := parse(msg)
		if err != nil {
			t.Fatalf("accepted %q but not its re-encoding %s: %v", body, msg, err)
		}
		if encoded != nil {
			encoded(t, v)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("%q re-encoded as %s decodes to %+v; want %+v", body, msg, again, v)
		}
	})
}

// addSeeds adds bodies to f's corpus.
func addSeeds(f *testing.F, bodies []string) {
	for _, s := range bodies {
		f.Add([]byte(s))
	}
}

// Found by FuzzParseTelemetry against the decoders before time bounds
// (testdata/fuzz/FuzzParseTelemetry/77b0c3984e2575d0): a timestamp of year
// 0000 with a positive offset is year -1 in UTC, which encoding/json cannot
// write, so the telemetry handler queued an empty message (it ignored the
// encoding error) and answered 202 for a report that was then dropped as
// poison. Times now stay within [MinTime, MaxTime).
func TestTimesOutsideTheEncodableRangeAreRefused(t *testing.T) {
	t.Parallel()
	for _, ts := range []string{"0000-01-01T0:00:00+01:00", "9999-12-31T23:30:00-01:00", "1999-12-31T23:59:59Z", "3000-01-01T00:00:00Z"} {
		body := `{"location":{"latitude":0,"longitude":0},"batteryPercent":0,"timestamp":"` + ts + `"}`
		_, err := wire.ParseTelemetry("d", []byte(body), nil)
		mustBeInvalid(t, err, []byte(body))
		if f := domain.ErrorField(err); f != "timestamp" {
			t.Errorf("%s: field %q, want timestamp", ts, f)
		}
		_, err = wire.ParseTelemetryMessage([]byte(`{"droneId":"d",` + body[1:]))
		if !domain.IsPermanent(err) {
			t.Errorf("%s: queue decoder answered %v, want a permanent failure", ts, err)
		}
	}
}
