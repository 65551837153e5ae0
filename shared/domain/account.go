package domain

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/idna"
)

// Account is a business registered with the service. Its id is the owner
// id of everything it creates.
type Account struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	ContactEmail  string    `json:"contactEmail"`
	WebhookURL    string    `json:"webhookUrl,omitempty"`
	WebhookSecret string    `json:"webhookSecret,omitempty"` // signs webhook bodies; shown once, at sign-up or when rotated
	Keys          []KeyInfo `json:"keys,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
}

// KeyInfo is what an account records of each of its keys: enough to list
// and count them, nothing that would authenticate.
type KeyInfo struct {
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// ActiveKeys counts the account's keys that are not revoked.
func (a *Account) ActiveKeys() int {
	n := 0
	for _, k := range a.Keys {
		if k.RevokedAt == nil {
			n++
		}
	}
	return n
}

// MaxActiveKeys bounds an account's unrevoked keys: enough to rotate and to
// give each of a business's systems its own, few enough that the per-key
// rate limit stays a per-account one within a small factor.
const MaxActiveKeys = 10

// MaxRevokedKeys bounds the revoked keys an account keeps a record of: the
// most recently revoked, so that revoking one of them again stays the
// no-op it was. The record of older ones is dropped (StaleRevokedKeys),
// so that issuing and revoking keys cannot grow the account without
// bound: with MaxActiveKeys, an account lists at most 20 keys.
const MaxRevokedKeys = 10

// StaleRevokedKeys returns the prefixes of the account's revoked keys
// beyond the keep most recently revoked, the longest revoked first (keys
// revoked at the same instant in the order the account lists them).
func (a *Account) StaleRevokedKeys(keep int) []string {
	var revoked []KeyInfo
	for _, k := range a.Keys {
		if k.RevokedAt != nil {
			revoked = append(revoked, k)
		}
	}
	keep = max(keep, 0)
	if len(revoked) <= keep {
		return nil
	}
	slices.SortStableFunc(revoked, func(x, y KeyInfo) int { return x.RevokedAt.Compare(*y.RevokedAt) })
	stale := make([]string, 0, len(revoked)-keep)
	for _, k := range revoked[:len(revoked)-keep] {
		stale = append(stale, k.Prefix)
	}
	return stale
}

// DropRevokedKeys removes from the account's record its revoked keys whose
// prefix is among prefixes; an active key stays whatever prefixes holds.
func (a *Account) DropRevokedKeys(prefixes []string) {
	if len(prefixes) == 0 {
		return
	}
	a.Keys = slices.DeleteFunc(a.Keys, func(k KeyInfo) bool {
		return k.RevokedAt != nil && slices.Contains(prefixes, k.Prefix)
	})
}

// APIKey is the stored form of one API key, kept under its prefix in a
// collection of its own so that authenticating a request is one point
// read. Only a SHA-256 hash of the key text is kept.
type APIKey struct {
	Prefix    string `json:"prefix"`
	AccountID string `json:"accountId"`
	// DroneID is set on a drone's device key instead of AccountID: the
	// key may post only that drone's telemetry.
	DroneID   string     `json:"droneId,omitempty"`
	Hash      string     `json:"hash"` // hex SHA-256 of the whole key text
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// The shape of an API key's text: "dd_<prefix>_<secret>", both parts in
// lowercase base32. The prefix is 80 random bits that name the key (enough
// that two keys never share one); the secret, 160 random bits, is what
// proves it.
const (
	APIKeyTag       = "dd_"
	KeyPrefixLength = 16
	KeySecretLength = 32
)

// SplitAPIKey returns the prefix of a key with the right shape, which is
// all that can be told of a key before it is looked up.
func SplitAPIKey(key string) (prefix string, ok bool) {
	rest, ok := strings.CutPrefix(key, APIKeyTag)
	if !ok || len(rest) != KeyPrefixLength+1+KeySecretLength || rest[KeyPrefixLength] != '_' {
		return "", false
	}
	prefix, secret := rest[:KeyPrefixLength], rest[KeyPrefixLength+1:]
	if !base32Lower(prefix) || !base32Lower(secret) {
		return "", false
	}
	return prefix, true
}

// ValidKeyPrefix reports whether s could be the prefix of a key.
func ValidKeyPrefix(s string) bool { return len(s) == KeyPrefixLength && base32Lower(s) }

func base32Lower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidWebhookURL checks a webhook address: absolute http(s), no
// credentials in it, at most 2048 characters, and a host written the one
// way that every resolver reads alike (a DNS name, four decimal numbers, or
// an IPv6 address in brackets): forms such as 2130706433, 0x7f000001,
// 0177.0.0.1 and 127.1 are refused, since some resolvers take them for
// 127.0.0.1. Unless allowPrivate (for development only), the host must
// also be public: an IP address outside every range WebhookAddrRefused
// names, and a DNS name with a dot that is not localhost or an internal
// or link-local name. A DNS name that resolves to a refused address passes
// here; the webhook client refuses it when it dials.
func ValidWebhookURL(field, s string, allowPrivate bool) error {
	if len(s) > 2048 {
		return Invalid(field, "must be at most 2048 characters")
	}
	// A URL is sent as it is written: white space or a control character
	// would be escaped into another URL than the one stored and shown.
	if strings.ContainsFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) {
		return Invalid(field, "must not contain spaces or control characters (escape them as %%20 and the like)")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return Invalid(field, "must be an absolute http or https URL without credentials")
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return Invalid(field, "must have a port from 1 to 65535 in plain digits, if any")
		}
	}
	host := u.Hostname()
	if strings.ContainsFunc(host, func(c rune) bool { return c > unicode.MaxASCII }) {
		// Judged as the HTTP client will dial it: Go's client maps a name
		// with IDNA's lookup profile (net/http's idnaASCII), under which
		// 127.0.0.① is 127.0.0.1 and ⓛocalhost is localhost.
		ascii, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return Invalid(field, "must name its host by a valid DNS name")
		}
		host = ascii
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" {
			return Invalid(field, "must not name a network interface")
		}
		if why := WebhookAddrRefused(addr); why != "" && !allowPrivate {
			return Invalid(field, "must point at a public address, not one that is %s", why)
		}
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	// No top-level domain begins with a digit, so such a host is an IPv4
	// address in one of the forms that resolvers disagree on.
	if last == "" || last[0] >= '0' && last[0] <= '9' || strings.Contains(host, "%") {
		return Invalid(field, "must name its host by a DNS name, four decimal numbers, or an IPv6 address in brackets")
	}
	// An underscore is no host name's (RFC 1123), but names that have one
	// resolve and Go's client dials them, and webhooks set up with one
	// must stay valid when an account puts its webhook again.
	if len(name) > 253 || !hostLabels(labels, "_") {
		return Invalid(field, "must name its host by a valid DNS name: labels of 1 to 63 letters, digits, hyphens and underscores, with no hyphen first or last")
	}
	if allowPrivate {
		return nil
	}
	if len(labels) < 2 {
		return Invalid(field, "must name a public host by its full DNS name")
	}
	if internalTLD[last] || name == "metadata.google.internal" || strings.HasSuffix(name, ".home.arpa") {
		return Invalid(field, "must name a public host, not a local or internal one")
	}
	return nil
}

// internalTLD are the top-level names that never name a public host:
// localhost (RFC 6761), multicast DNS's local (RFC 6762) and internal,
// which ICANN reserved for private use in 2024.
var internalTLD = map[string]bool{"localhost": true, "local": true, "internal": true}
