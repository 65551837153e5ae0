package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// unknownFieldPath finds where in body the first member lies that the Go
// type t has no field for, as encoding/json matches members to fields (the
// field's json name or its Go name, without regard to case), and spells
// its path ("packageInfo.color"). encoding/json's own error names only the
// member ("json: unknown field \"color\""). It returns "" when it finds
// none, which cannot happen for a body the decoder refused for an unknown
// field.
func unknownFieldPath(body []byte, t reflect.Type) string {
	return findPath(body, t, false)
}

// nullPath finds where in body the first null lies that encoding/json
// would take for a value left out (a nil pointer, a zero, an empty
// string: a member, an array's element or a map's value), and spells its
// path; "" when there is none (a body that is null as a whole counts as
// none). A null decoded into a json.RawMessage, or into an interface, is
// the parser's to judge: the raw ones are raw so that null can mean
// something (a webhook removed, an open-ended pause).
func nullPath(body []byte, t reflect.Type) string {
	return findPath(body, t, true)
}

func findPath(body []byte, t reflect.Type, nulls bool) string {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var at shapePath
	// A body that is null as a whole is read as an empty one, whose
	// required fields say what is missing.
	if found, _ := at.find(dec, t, nulls); found && len(at) > 0 {
		return at.String()
	}
	return ""
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
)

// find reads one value of type t; it reports true, with p at the member,
// on the first member t has no field for, or, with nulls, on the first
// null that t does not take as raw JSON.
func (p *shapePath) find(dec *jsontext.Decoder, t reflect.Type, nulls bool) (bool, error) {
	kind := dec.PeekKind()
	if nulls && kind == 'n' && t != nil && t != rawMessageType && t != reflect.PointerTo(rawMessageType) && t.Kind() != reflect.Interface {
		return true, nil
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || (kind != '{' && kind != '[') || reflect.PointerTo(t).Implements(unmarshalerType) || t.Kind() == reflect.Interface {
		return false, dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return false, err
	}
	for i := 0; dec.PeekKind() != '}' && dec.PeekKind() != ']'; i++ {
		var elem reflect.Type
		if kind == '[' {
			*p = append(*p, pathStep{index: i, isIndex: true})
			if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
				elem = t.Elem()
			}
		} else {
			kt, err := dec.ReadToken()
			if err != nil {
				return false, err
			}
			*p = append(*p, pathStep{key: kt.String()})
			switch t.Kind() {
			case reflect.Map:
				elem = t.Elem()
			case reflect.Struct:
				f, ok := fieldFor(t, kt.String())
				if !ok && !nulls {
					return true, nil
				}
				elem = f
			}
		}
		if found, err := p.find(dec, elem, nulls); found || err != nil {
			return found, err
		}
		*p = (*p)[:len(*p)-1]
	}
	_, err := dec.ReadToken() // the closing delimiter
	return false, err
}

// fieldFor returns the type of struct t's field that encoding/json decodes
// the member name into: one whose json name (or, without one, Go name)
// matches name exactly or else without regard to case, looking into
// embedded structs as encoding/json does.
func fieldFor(t reflect.Type, name string) (reflect.Type, bool) {
	var folded reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			inner := f.Type
			if inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}
			if inner.Kind() == reflect.Struct {
				if ft, ok := fieldFor(inner, name); ok {
					return ft, true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		key := tag
		if key == "" {
			key = f.Name
		}
		if key == name {
			return f.Type, true
		}
		if folded == nil && foldKey(key) == foldKey(name) {
			folded = f.Type
		}
	}
	return folded, folded != nil
}
