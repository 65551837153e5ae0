package wire

import (
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

// hostKeyParam is the Functions host's function key, which the platform
// reads from the query of any HTTP function and passes on.
const hostKeyParam = "code"

// CheckQuery refuses, naming the parameter, a query parameter the endpoint
// does not take, one given more than once and one given empty: each is a
// client mistake that, ignored, would answer a question other than the one
// asked (a misspelt filter, a second limit, "limit=" taken for the default).
// The values themselves are the endpoint's to check.
// maxParamName bounds a parameter name that an error names: no endpoint
// takes a longer one, and an answer need not echo a long one back.
const maxParamName = 64

func CheckQuery(q url.Values, params ...string) error {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same parameter is named whatever the map's order
	for _, k := range keys {
		// The host reads its key whatever the case of the name (ASP.NET's
		// query collection ignores case; AuthenticationLevelHandler asks
		// it for "code"), so every spelling of it is the host's.
		if strings.EqualFold(k, hostKeyParam) {
			continue
		}
		if k == "" {
			return domain.Invalid("query", "has a parameter with no name")
		}
		if !utf8.ValidString(k) || strings.IndexFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return domain.Invalid("query", "has a parameter whose name is not printable text")
		}
		if len(k) > maxParamName {
			return domain.Invalid("query", "has a parameter whose name is longer than %d bytes", maxParamName)
		}
		if !slices.Contains(params, k) {
			if len(params) == 0 {
				return domain.Invalid(k, "is not a parameter of this endpoint, which takes none")
			}
			return domain.Invalid(k, "is not a parameter of this endpoint (%s)", strings.Join(params, ", "))
		}
		vs := q[k]
		if len(vs) > 1 {
			return domain.Invalid(k, "is given more than once")
		}
		if len(vs) == 1 && vs[0] == "" {
			return domain.Invalid(k, "must not be empty; leave the parameter out for its default")
		}
	}
	return nil
}
