package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// MaxConfirmationBlobBytes bounds the decoded blob of a proof of delivery:
// a phone picture scaled for the purpose, a few seconds of voice, or a
// fingerprint image fit in it; the request body's 1 MiB bound is for the
// whole request, in base64.
const MaxConfirmationBlobBytes = 256 << 10

// ConfirmationBlobTypes are the media types a proof of delivery's blob may
// declare, for each confirmation type that carries one.
var ConfirmationBlobTypes = map[domain.ConfirmationType][]string{
	domain.ConfirmationPicture:     {"image/jpeg", "image/png", "image/webp"},
	domain.ConfirmationFingerPrint: {"image/png", "image/jpeg", "image/x-wsq"},
	domain.ConfirmationVoice:       {"audio/mpeg", "audio/mp4", "audio/ogg", "audio/wav", "audio/webm"},
}

// sniffed are the declared types whose content http.DetectContentType
// recognises reliably, with what it says for them: a blob of one of these
// types must be what it says it is. The others are taken as declared.
var sniffed = map[string]string{
	"image/jpeg": "image/jpeg",
	"image/png":  "image/png",
	"image/webp": "image/webp",
	"audio/wav":  "audio/wave",
	"audio/ogg":  "application/ogg",
}

// ParsedConfirmation is a decoded proof of delivery: what the delivery
// keeps, and the blob's content, kept apart.
type ParsedConfirmation struct {
	Confirmation domain.Confirmation
	Blob         []byte
}

// ParseConfirmation decodes and validates a POST
// /api/deliveries/{id}/confirmations body: {dateTime, geoCoordinates,
// confirmationType, confirmationBlob?}. The blob is a data: URI,
// "data:<media type>;base64,<content>", so that its type is declared with
// it; FingerPrint, Picture and Voice need one of the types
// ConfirmationBlobTypes lists, None takes none. A malformed body is
// EINVALID (400), a blob larger than MaxConfirmationBlobBytes ETOOLARGE
// (413), a blob of a type the confirmation does not take, or whose content
// is not of its declared type, EUNPROCESSABLE (422).
func ParseConfirmation(body []byte) (*ParsedConfirmation, error) {
	var w struct {
		DateTime         *string         `json:"dateTime"`
		GeoCoordinates   json.RawMessage `json:"geoCoordinates"`
		ConfirmationType *string         `json:"confirmationType"`
		ConfirmationBlob *string         `json:"confirmationBlob"`
	}
	if err := DecodeStrictLarge(body, &w); err != nil {
		return nil, err
	}
	var p ParsedConfirmation
	c := &p.Confirmation
	t, err := parseTime("dateTime", w.DateTime)
	if err != nil {
		return nil, err
	}
	if t.IsZero() {
		return nil, domain.Invalid("dateTime", "is required")
	}
	c.DateTime = t
	if c.GeoCoordinates, err = ParseLocation("geoCoordinates", w.GeoCoordinates); err != nil {
		return nil, err
	}
	if w.ConfirmationType == nil {
		return nil, domain.Invalid("confirmationType", "is required")
	}
	switch ct := domain.ConfirmationType(*w.ConfirmationType); ct {
	case domain.ConfirmationFingerPrint, domain.ConfirmationPicture, domain.ConfirmationVoice, domain.ConfirmationNone:
		c.ConfirmationType = ct
	default:
		return nil, domain.Invalid("confirmationType", "must be one of FingerPrint, Picture, Voice, None")
	}
	allowed := ConfirmationBlobTypes[c.ConfirmationType]
	switch {
	case w.ConfirmationBlob == nil && len(allowed) > 0:
		return nil, domain.Invalid("confirmationBlob", "is required for a %s confirmation: a data: URI of type %s", c.ConfirmationType, strings.Join(allowed, ", "))
	case w.ConfirmationBlob == nil:
		return &p, nil
	case len(allowed) == 0:
		return nil, domain.Invalid("confirmationBlob", "must be left out when confirmationType is %s", c.ConfirmationType)
	}
	mediaType, data, err := parseDataURI("confirmationBlob", *w.ConfirmationBlob, MaxConfirmationBlobBytes)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(allowed, mediaType) {
		return nil, domain.Unprocessable("confirmationBlob", "is %s; a %s confirmation takes %s", mediaType, c.ConfirmationType, strings.Join(allowed, ", "))
	}
	if want, ok := sniffed[mediaType]; ok {
		if got, _, _ := strings.Cut(http.DetectContentType(data), ";"); got != want {
			return nil, domain.Unprocessable("confirmationBlob", "declares %s but its content is not %s", mediaType, mediaType)
		}
	}
	sum := sha256.Sum256(data)
	c.BlobType, c.BlobBytes, c.BlobSHA256 = mediaType, len(data), hex.EncodeToString(sum[:])
	p.Blob = data
	return &p, nil
}

// parseDataURI reads "data:<type>;base64,<content>" (RFC 2397) whose
// content decodes to at most max bytes, and returns the media type, lower
// case and without parameters, and the content. The size is checked on
// the encoded length before anything is decoded.
func parseDataURI(field, s string, max int) (string, []byte, error) {
	bad := domain.Invalid(field, "must be a data: URI such as data:image/jpeg;base64,<content>")
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return "", nil, bad
	}
	meta, encoded, ok := strings.Cut(rest, ",")
	if !ok {
		return "", nil, bad
	}
	meta, ok = strings.CutSuffix(meta, ";base64")
	if !ok {
		return "", nil, domain.Invalid(field, "must be base64 encoded: data:<type>;base64,<content>")
	}
	mediaType, _, err := mime.ParseMediaType(meta)
	if err != nil || !strings.Contains(mediaType, "/") {
		return "", nil, domain.Invalid(field, "must declare a media type: data:<type>;base64,<content>")
	}
	if base64.StdEncoding.DecodedLen(len(encoded)) > max+2 {
		return "", nil, domain.TooLarge(field, "must be at most %d KiB once decoded", max>>10)
	}
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return "", nil, domain.Invalid(field, "must hold base64 content after the comma")
	}
	if len(data) > max {
		return "", nil, domain.TooLarge(field, "must be at most %d KiB once decoded", max>>10)
	}
	if len(data) == 0 {
		return "", nil, domain.Invalid(field, "must not be empty")
	}
	return mediaType, data, nil
}
