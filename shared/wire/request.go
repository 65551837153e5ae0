package wire

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// The wire shapes accept optional and misspelled fields so that validation,
// not decoding, reports what is wrong, by the field's name.
type locationWire struct {
	Latitude  *float64 `json:"latitude"`
	Longitude *float64 `json:"longitude"`
	Altitude  *float64 `json:"altitude"`
}

type packageInfoWire struct {
	PackageID *string  `json:"packageId"`
	Size      *string  `json:"size"`
	Weight    *float64 `json:"weight"`
	Tag       *string  `json:"tag"`
}

type deliveryRequestWire struct {
	DeliveryID           *string          `json:"deliveryId"`
	OwnerID              *string          `json:"ownerId"`
	PickupLocation       *locationWire    `json:"pickupLocation"`
	DropOffLocation      *locationWire    `json:"dropOffLocation"`
	DropoffLocation      *locationWire    `json:"dropoffLocation"`
	PickupTime           *string          `json:"pickupTime"`
	Deadline             *string          `json:"deadline"`
	Expedited            *bool            `json:"expedited"`
	ConfirmationRequired *string          `json:"confirmationRequired"`
	PackageInfo          *packageInfoWire `json:"packageInfo"`
}

// ParsedRequest is a delivery request as the client sent it, validated.
// Optional times are zero when absent; Defaults fills them at acceptance.
type ParsedRequest struct {
	DeliveryID string // "" when the client did not choose one
	Request    domain.DeliveryRequest
	Hash       string // identifies the request's content for idempotent retries
}

// ParseDeliveryRequest decodes and validates a POST /api/deliveryrequests
// body. ownerId is optional: the caller's account owns the delivery.
func ParseDeliveryRequest(body []byte) (*ParsedRequest, error) {
	var w deliveryRequestWire
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	var p ParsedRequest
	r := &p.Request
	if w.DeliveryID != nil {
		if err := domain.ValidID("deliveryId", *w.DeliveryID); err != nil {
			return nil, err
		}
		// /api/deliveries/summary is the monthly summary, in any case, so a
		// delivery of that id could never be read by its URL.
		if strings.EqualFold(*w.DeliveryID, "summary") {
			return nil, domain.Invalid("deliveryId", "must not be %q, which names the deliveries' summary", *w.DeliveryID)
		}
		p.DeliveryID = *w.DeliveryID
	}
	if w.OwnerID != nil && *w.OwnerID != "" {
		// The owner is the authenticated account; a body may repeat it, and
		// the handler refuses one that names somebody else.
		if err := domain.ValidText("ownerId", *w.OwnerID, domain.MaxIDLength); err != nil {
			return nil, err
		}
		r.OwnerID = *w.OwnerID
	}
	var err error
	if r.PickupLocation, err = parseLocation("pickupLocation", w.PickupLocation); err != nil {
		return nil, err
	}
	drop, field, err := pickDropoff(w.DropOffLocation, w.DropoffLocation)
	if err != nil {
		return nil, err
	}
	if r.DropoffLocation, err = parseLocation(field, drop); err != nil {
		return nil, err
	}
	if r.PickupTime, r.Deadline, err = parseInterval("pickupTime", w.PickupTime, "deadline", w.Deadline); err != nil {
		return nil, err
	}
	if w.Expedited != nil {
		r.Expedited = *w.Expedited
	}
	r.ConfirmationRequired = domain.ConfirmationNone
	if w.ConfirmationRequired != nil {
		switch c := domain.ConfirmationType(*w.ConfirmationRequired); c {
		case domain.ConfirmationNone, domain.ConfirmationFingerPrint, domain.ConfirmationPicture, domain.ConfirmationVoice:
			r.ConfirmationRequired = c
		default:
			return nil, domain.Invalid("confirmationRequired", "must be one of None, FingerPrint, Picture, Voice")
		}
	}
	if r.PackageInfo, err = parsePackageInfo(w.PackageInfo); err != nil {
		return nil, err
	}
	p.Hash = hashJSON(&p.Request, p.DeliveryID)
	return &p, nil
}

// SetOwner makes owner the request's owner and updates its hash, so that a
// body that names its owner and one that leaves it to the API key are the
// same request.
func (p *ParsedRequest) SetOwner(owner string) {
	p.Request.OwnerID = owner
	p.Hash = hashJSON(&p.Request, p.DeliveryID)
}

// Matches reports whether stored, the hash of a request accepted earlier
// under the same id, is this request's: the same content, where a package
// id left out and one that names the default (the delivery's id, which
// acceptance fills in) are the same request.
func (p *ParsedRequest) Matches(stored string) bool {
	if stored == p.Hash {
		return true
	}
	if p.DeliveryID == "" {
		return false
	}
	other := p.Request
	switch other.PackageInfo.PackageID {
	case "":
		other.PackageInfo.PackageID = p.DeliveryID
	case p.DeliveryID:
		other.PackageInfo.PackageID = ""
	default:
		return false
	}
	return stored == hashJSON(&other, p.DeliveryID)
}

// pickDropoff returns the dropoff under whichever of the two spellings the
// reference API's clients use it came, with that spelling to name it in
// errors; both spellings at once are refused.
func pickDropoff(dropOff, dropoff *locationWire) (*locationWire, string, error) {
	switch {
	case dropOff != nil && dropoff != nil:
		return nil, "", domain.Invalid("dropoffLocation", "give either dropOffLocation or dropoffLocation, not both")
	case dropoff != nil:
		return dropoff, "dropoffLocation", nil
	}
	return dropOff, "dropOffLocation", nil
}

func parseLocation(field string, w *locationWire) (domain.Location, error) {
	if w == nil {
		return domain.Location{}, domain.Invalid(field, "is required")
	}
	if w.Latitude == nil {
		return domain.Location{}, domain.Invalid(field+".latitude", "is required")
	}
	if w.Longitude == nil {
		return domain.Location{}, domain.Invalid(field+".longitude", "is required")
	}
	if lat := *w.Latitude; math.IsNaN(lat) || lat < -90 || lat > 90 {
		return domain.Location{}, domain.Invalid(field+".latitude", "must be between -90 and 90")
	}
	if lon := *w.Longitude; math.IsNaN(lon) || lon < -180 || lon > 180 {
		return domain.Location{}, domain.Invalid(field+".longitude", "must be between -180 and 180")
	}
	if w.Altitude != nil && (*w.Altitude < -500 || *w.Altitude > 20000) {
		return domain.Location{}, domain.Invalid(field+".altitude", "must be between -500 and 20000 metres")
	}
	return domain.Location{Latitude: *w.Latitude, Longitude: *w.Longitude, Altitude: w.Altitude}, nil
}

// ParseLocation validates a location given as a JSON object.
func ParseLocation(field string, raw json.RawMessage) (domain.Location, error) {
	var w *locationWire
	if len(raw) > 0 {
		if err := DecodeStrict(raw, &w); err != nil {
			var e *domain.Error
			if errors.As(err, &e) && e.Field != "" && e.Field != "body" {
				e.Field = field + "." + e.Field
				return domain.Location{}, e
			}
			return domain.Location{}, domain.Invalid(field, "must be an object with latitude and longitude")
		}
	}
	return parseLocation(field, w)
}

// The times a client may give. Both bounds keep every time the service
// derives from one (a default deadline hours later, an ETA) inside the years
// 0000-9999 that RFC 3339, and so encoding/json, can represent.
var (
	MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// parseRFC3339 parses an RFC 3339 date-time, with or without a fraction
// of a second. RFC 3339 (section 5.6, its note) lets the "T" and the "Z"
// be written in lower case, which time.Parse does not take.
func parseRFC3339(s string) (time.Time, error) {
	if len(s) > 10 && s[10] == 't' {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	return time.Parse(time.RFC3339Nano, s)
}

func parseTime(field string, s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	t, err := parseRFC3339(*s)
	if err != nil {
		return time.Time{}, domain.Invalid(field, "must be an RFC 3339 date-time such as 2026-11-26T15:04:05Z")
	}
	return inRange(field, t)
}

// parseInterval parses two optional times given as fromField and
// toField; when both are given, to must come after from.
func parseInterval(fromField string, from *string, toField string, to *string) (start, end time.Time, err error) {
	if start, err = parseTime(fromField, from); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if end, err = parseTime(toField, to); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !start.IsZero() && !end.IsZero() && !end.After(start) {
		return time.Time{}, time.Time{}, domain.Invalid(toField, "must be after %s", fromField)
	}
	return start, end, nil
}

// inRange returns t in UTC when it lies in [MinTime, MaxTime).
func inRange(field string, t time.Time) (time.Time, error) {
	if t.Before(MinTime) || !t.Before(MaxTime) {
		return time.Time{}, domain.Invalid(field, "must be from %s up to %s", MinTime.Format(time.DateOnly), MaxTime.Format(time.DateOnly))
	}
	return t.UTC(), nil
}

func parsePackageInfo(w *packageInfoWire) (domain.PackageInfo, error) {
	var p domain.PackageInfo
	if w == nil {
		return p, domain.Invalid("packageInfo", "is required")
	}
	if w.PackageID != nil && *w.PackageID != "" {
		if err := domain.ValidID("packageInfo.packageId", *w.PackageID); err != nil {
			return p, err
		}
		p.PackageID = *w.PackageID
	}
	if w.Size == nil {
		return p, domain.Invalid("packageInfo.size", "is required")
	}
	p.Size = domain.PackageSize(*w.Size)
	if p.Size.Rank() == 0 {
		return p, domain.Invalid("packageInfo.size", "must be one of Small, Medium, Large")
	}
	if w.Weight == nil {
		return p, domain.Invalid("packageInfo.weight", "is required")
	}
	if wt := *w.Weight; math.IsNaN(wt) || wt <= 0 || wt > domain.MaxWeightKg {
		return p, domain.Invalid("packageInfo.weight", "must be greater than 0 and at most %d kg", domain.MaxWeightKg)
	}
	p.Weight = *w.Weight
	if w.Tag != nil {
		if err := domain.ValidText("packageInfo.tag", *w.Tag, domain.MaxTagLength); err != nil {
			return p, err
		}
		p.Tag = *w.Tag
	}
	return p, nil
}

// MaxJSONDepth bounds how deeply a client's JSON may nest; no body of the
// API nests more than four levels, so anything deeper is hostile.
const MaxJSONDepth = 32

// MaxJSONBytes bounds the JSON bodies of the API's small documents (a
// delivery request, a sign-up, a subscription: a few hundred bytes each),
// well below the 1 MiB every request may carry: checking a body costs CPU
// in proportion to its size (about 60 ms for 1 MiB), which a client could
// otherwise spend many times a second within its rate limit. The bodies
// that are large by nature (a zone's polygons, a proof of delivery's blob,
// a batch of telemetry) are decoded with DecodeStrictLarge.
const MaxJSONBytes = 64 << 10

// DecodeStrict decodes one JSON value of at most MaxJSONBytes into v,
// rejecting invalid UTF-8, unknown fields, duplicate keys, nesting deeper
// than MaxJSONDepth, trailing data and nulls (but into a json.RawMessage),
// and reports each problem by the offending field's path.
func DecodeStrict(body []byte, v any) error {
	if len(body) > MaxJSONBytes {
		return domain.TooLarge("body", "must be at most %d bytes", MaxJSONBytes)
	}
	return DecodeStrictLarge(body, v)
}

// DecodeStrictLarge is DecodeStrict for the bodies that are large by
// nature, bounded only by the request's own limit.
func DecodeStrictLarge(body []byte, v any) error {
	// encoding/json would quietly replace invalid UTF-8 with U+FFFD and let
	// the last of two duplicate keys win, so a value could pass validation
	// looking different from what the client, or a proxy before us, read.
	if !utf8.Valid(body) {
		return domain.Invalid("body", "must be valid UTF-8")
	}
	if err := checkShape(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		err = decodeError(err)
		if e, ok := err.(*domain.Error); ok && e.Message == unknownField {
			if path := unknownFieldPath(body, reflect.TypeOf(v)); path != "" {
				e.Field = path
			}
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return domain.Invalid("body", "must hold a single JSON value")
	}
	// encoding/json takes a null for a value left out, which the API's
	// schemas do not allow but where they say so: refused, with its path,
	// rather than read as "everywhere", "not expedited" or "now". Only a
	// body that has the word at all is walked again.
	if bytes.Contains(body, []byte("null")) {
		switch path := nullPath(body, reflect.TypeOf(v)); {
		case path == "":
		case strings.HasSuffix(path, "]"): // an array's element
			return domain.Invalid(path, "must not be null")
		default:
			return domain.Invalid(path, "must not be null (leave an optional field out instead)")
		}
	}
	return nil
}

// checkShape walks the tokens of body once, before it is decoded, for what
// the decoder does not refuse by itself: keys given twice in one object
// (compared as the decoder matches them, without regard to case) and
// nesting deeper than MaxJSONDepth. It reads the tokens with jsontext, the
// tokenizer of encoding/json/v2 (github.com/go-json-experiment/json), which
// hands them out without allocating, where encoding/json's Decoder.Token
// boxes each.
func checkShape(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var at shapePath
	return at.walk(dec, 0)
}

// shapePath is where checkShape is in the document: the keys and indexes
// from the top. It is spelt out ("items[3].name") only for an error, so
// that the walk's work grows with the body, not with the body times the
// depth and length of its names.
type shapePath []pathStep

type pathStep struct {
	key     string
	index   int // when isIndex
	isIndex bool
}

func (p shapePath) String() string {
	var b strings.Builder
	for _, s := range p {
		switch {
		case s.isIndex:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		default:
			name := cmp.Or(printableName(s.key), `""`) // a member with an empty name
			if b.Len() > 0 {
				name = "." + name
			}
			b.WriteString(name)
		}
	}
	return orBody(b.String())
}

func (p *shapePath) walk(dec *jsontext.Decoder, depth int) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return shapeError(err)
	}
	kind := tok.Kind()
	if kind != '{' && kind != '[' {
		return nil
	}
	if depth >= MaxJSONDepth {
		return domain.Invalid(p.String(), "nests deeper than %d levels", MaxJSONDepth)
	}
	end := jsontext.Kind('}')
	if kind == '[' {
		end = ']'
	}
	var seen map[string]bool
	for i := 0; dec.PeekKind() != end; i++ {
		if kind == '[' {
			*p = append(*p, pathStep{index: i, isIndex: true})
		} else {
			kt, err := dec.ReadToken()
			if err != nil {
				return shapeError(err)
			}
			key := kt.String() // object names are always strings
			*p = append(*p, pathStep{key: key})
			if seen == nil {
				seen = map[string]bool{}
			}
			folded := foldKey(key)
			if seen[folded] {
				return domain.Invalid(p.String(), "is given more than once")
			}
			seen[folded] = true
		}
		if err := p.walk(dec, depth+1); err != nil {
			return err
		}
		*p = (*p)[:len(*p)-1]
	}
	if _, err := dec.ReadToken(); err != nil { // the closing delimiter
		return shapeError(err)
	}
	return nil
}

// shapeError says what is wrong with a body the tokenizer stopped in.
func shapeError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is empty or truncated JSON", Err: err}
	}
	return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is not valid JSON", Err: err}
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

// foldKey maps every spelling that encoding/json takes for the same field
// name (it matches names with Unicode case folding, so "WEIGHT" and
// "weight" are one field) to a single key.
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// unknownField is the message of a member the decoded type has no field for.
const unknownField = "is not a known field"

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return &domain.Error{Code: domain.EINVALID, Field: field, Message: "must be of type " + jsonType(typeErr.Type.Kind().String()), Err: err}
	case errors.As(err, &syntaxErr):
		return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is not valid JSON", Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is empty or truncated JSON", Err: err}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &domain.Error{Code: domain.EINVALID, Field: strings.Trim(name, `"`), Message: unknownField, Err: err}
	}
	return &domain.Error{Code: domain.EINVALID, Field: "body", Message: "is not valid JSON", Err: err}
}

func jsonType(kind string) string {
	switch kind {
	case "float64", "float32", "int", "int64", "int32":
		return "number"
	case "ptr", "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return kind
}

func hashJSON(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p) // encoding plain structs cannot fail
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ParseReschedule decodes and validates a reschedule; at least one field
// must be given.
func ParseReschedule(body []byte) (*domain.Reschedule, error) {
	var w struct {
		PickupLocation  *locationWire `json:"pickupLocation"`
		DropOffLocation *locationWire `json:"dropOffLocation"`
		DropoffLocation *locationWire `json:"dropoffLocation"`
		PickupTime      *string       `json:"pickupTime"`
		Deadline        *string       `json:"deadline"`
	}
	if err := DecodeStrict(body, &w); err != nil {
		return nil, err
	}
	var r domain.Reschedule
	if w.PickupLocation != nil {
		l, err := parseLocation("pickupLocation", w.PickupLocation)
		if err != nil {
			return nil, err
		}
		r.PickupLocation = &l
	}
	drop, field, err := pickDropoff(w.DropOffLocation, w.DropoffLocation)
	if err != nil {
		return nil, err
	}
	if drop != nil {
		l, err := parseLocation(field, drop)
		if err != nil {
			return nil, err
		}
		r.DropoffLocation = &l
	}
	for _, f := range []struct {
		name string
		in   *string
		out  **time.Time
	}{{"pickupTime", w.PickupTime, &r.PickupTime}, {"deadline", w.Deadline, &r.Deadline}} {
		if f.in == nil {
			continue
		}
		t, err := parseTime(f.name, f.in)
		if err != nil {
			return nil, err
		}
		if t.IsZero() {
			return nil, domain.Invalid(f.name, "must not be empty")
		}
		*f.out = &t
	}
	if r == (domain.Reschedule{}) {
		return nil, domain.Invalid("body", "must change at least one of pickupLocation, dropOffLocation, pickupTime, deadline")
	}
	return &r, nil
}

// printableName is a member's name as an error may show it: at most 64
// bytes, and a character that does not print (a control, a direction
// override) as U+FFFD.
func printableName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return utf8.RuneError
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
