package host

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Host versions disagree on whether a metadata value is the JSON value
// itself ("DeliveryCount": 3) or a string holding its JSON encoding
// ("DeliveryCount": "3", "MessageId": "\"abc\""); some send plain strings
// ("MessageId": "abc"). Every decoder here accepts all three.

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// jsonString tells a JSON string from any other value, which is how every
// decoder here spots a double encoding.
func jsonString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// scalarString decodes a string-valued scalar. A number or boolean yields its
// literal text, because a plain id such as 42 is indistinguishable from a
// double-encoded number; "null" in either encoding yields "".
func scalarString(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	s, ok := jsonString(raw)
	if !ok {
		raw = bytes.TrimSpace(raw)
		if raw[0] == '{' || raw[0] == '[' {
			return "", fmt.Errorf("want a string, got %.40s", raw)
		}
		return string(raw), nil
	}
	if inner, ok := jsonString(json.RawMessage(s)); ok {
		return inner, nil
	}
	if s == "null" {
		return "", nil
	}
	return s, nil
}

// scalarText returns the text of a scalar that may be double-encoded, with
// any quotes removed, for parsing as a number or a time; "" means absent.
func scalarText(raw json.RawMessage) (string, error) {
	s, err := scalarString(raw)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(s), nil
}

func scalarInt(raw json.RawMessage) (int64, error) {
	s, err := scalarText(raw)
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %q", s)
	}
	return n, nil
}

// timeLayouts are the shapes .NET gives a DateTime or DateTimeOffset in
// JSON: ISO 8601 with up to seven fractional digits, and without an offset
// for a DateTime of unspecified kind, which the Service Bus SDK fills in UTC.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"}

func scalarTime(raw json.RawMessage) (time.Time, error) {
	s, err := scalarText(raw)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("want an ISO 8601 time, got %q", s)
}

// object decodes a dictionary sent as an object or as a string holding one.
func object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	if s, ok := jsonString(raw); ok {
		if strings.TrimSpace(s) == "" || s == "null" {
			return nil, nil
		}
		raw = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("want an object, got %.40s", raw)
	}
	return m, nil
}

// stringList decodes a header or query value: an array of strings on the
// hosts we know, a single string defensively.
func stringList(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	if s, ok := jsonString(raw); ok {
		return []string{s}, nil
	}
	var vs []string
	if err := json.Unmarshal(raw, &vs); err != nil {
		return nil, fmt.Errorf("want a string or an array of strings, got %.40s", raw)
	}
	return vs, nil
}
