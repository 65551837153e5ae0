package standalone

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fabrikam/dronedelivery/shared/functionapp"
)

// Rate is a sustained request rate; zero means unlimited.
type Rate struct {
	N   float64
	Per time.Duration
}

// perSecond is the rate in tokens per second.
func (r Rate) perSecond() float64 {
	if r.N <= 0 || r.Per <= 0 {
		return 0
	}
	return r.N / r.Per.Seconds()
}

// String formats the rate as ParseRate reads it.
func (r Rate) String() string {
	if r.perSecond() == 0 {
		return "off"
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	if unit == "" {
		return fmt.Sprintf("%g/%s", r.N, r.Per)
	}
	return fmt.Sprintf("%g/%s", r.N, unit)
}

// ParseRate reads a rate such as "50/s", "600/m" or "20/h"; "off" and "0"
// mean unlimited.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	v, err := strconv.ParseFloat(n, 64)
	if !ok || per == 0 || err != nil || !(v > 0) || math.IsInf(v, 0) {
		return Rate{}, fmt.Errorf("rate %q must look like 50/s, 600/m or 20/h, or be off", s)
	}
	return Rate{N: v, Per: per}, nil
}

// RateLimits configures the standalone runtime's token buckets. Under the
// Functions host the platform (or API Management in front of it) is where
// such limits belong, so only this runtime applies them.
type RateLimits struct {
	// PerKey is the sustained rate of each bucket a handler names when it
	// authenticates a request (functionapp.NoteAuthenticated: an account,
	// whichever of its keys it uses; a drone; the operator), with Burst
	// requests in hand. Requests without a key, and those with a bearer
	// token that has not yet authenticated, share a bucket per client
	// address.
	PerKey Rate
	Burst  int
	// SignUp is each client address's rate on the SignUpFunctions, with
	// SignUpBurst in hand; sign-up is open to anyone, so it is held tighter.
	SignUp          Rate
	SignUpBurst     int
	SignUpFunctions []string
	// Exempt names functions never limited (health probes).
	Exempt []string
	// FailedAuth is each client address's allowance of 401 answers, with
	// FailedAuthBurst in hand; once spent, the address's requests get 429
	// until it refills, which makes guessing keys slow. It applies only
	// while PerKey does.
	FailedAuth      Rate
	FailedAuthBurst int
	// TrustForwardedFor takes the client address from the last entry of
	// X-Forwarded-For, for a deployment behind a proxy that sets it; without
	// a proxy a client could name any address there.
	TrustForwardedFor bool
	// MaxBuckets bounds the memory of each limiter; idle buckets are
	// forgotten first.
	MaxBuckets int
}

// Default rate limits, documented in docs/accounts.md ("Rate limits").
var (
	DefaultPerKey          = Rate{N: 50, Per: time.Second}
	DefaultBurst           = 100
	DefaultSignUp          = Rate{N: 20, Per: time.Hour}
	DefaultSignUpBurst     = 5
	DefaultFailedAuth      = Rate{N: 30, Per: time.Minute}
	DefaultFailedAuthBurst = 20
	DefaultMaxBuckets      = 50000
)

func (l RateLimits) withDefaults() RateLimits {
	l.Burst = positiveOr(l.Burst, DefaultBurst)
	l.SignUpBurst = positiveOr(l.SignUpBurst, DefaultSignUpBurst)
	if l.FailedAuth == (Rate{}) {
		l.FailedAuth = DefaultFailedAuth
	}
	l.FailedAuthBurst = positiveOr(l.FailedAuthBurst, DefaultFailedAuthBurst)
	l.MaxBuckets = positiveOr(l.MaxBuckets, DefaultMaxBuckets)
	return l
}

// bucket is one token bucket: tokens in hand as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// buckets is a set of token buckets of one rate and size, keyed by who is
// charged. A bucket that has refilled is the same as no bucket, which is
// what lets idle ones be forgotten.
type buckets struct {
	mu    sync.Mutex
	rate  float64 // tokens per second
	burst float64
	max   int
	m     map[string]*bucket
}

func newBuckets(r Rate, burst, max int) *buckets {
	if r.perSecond() == 0 {
		return nil
	}
	return &buckets{rate: r.perSecond(), burst: float64(burst), max: max, m: map[string]*bucket{}}
}

// refill brings b up to now and returns it.
func (bs *buckets) refill(b *bucket, now time.Time) *bucket {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(bs.burst, b.tokens+dt*bs.rate)
	}
	b.last = now
	return b
}

func (bs *buckets) get(key string, now time.Time) *bucket {
	b, ok := bs.m[key]
	if ok {
		return bs.refill(b, now)
	}
	if len(bs.m) >= bs.max {
		bs.evict(now)
	}
	b = &bucket{tokens: bs.burst, last: now}
	bs.m[key] = b
	return b
}

// evict forgets buckets that have refilled; if that is not enough (a flood
// of distinct keys) it forgets others at random, which at worst hands their
// owners a fresh burst.
func (bs *buckets) evict(now time.Time) {
	for k, b := range bs.m {
		if bs.refill(b, now).tokens >= bs.burst {
			delete(bs.m, k)
		}
	}
	for k := range bs.m {
		if len(bs.m) < bs.max*9/10 {
			break
		}
		delete(bs.m, k)
	}
}

// take spends a token of key's bucket, or says how long until one is there.
func (bs *buckets) take(key string, now time.Time) (bool, time.Duration) {
	if bs == nil {
		return true, 0
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.get(key, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / bs.rate * float64(time.Second))
}

// peek reports whether key's bucket has a token, without spending it.
func (bs *buckets) peek(key string, now time.Time) (bool, time.Duration) {
	if bs == nil {
		return true, 0
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.m[key]
	if !ok {
		return true, 0
	}
	if bs.refill(b, now).tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / bs.rate * float64(time.Second))
}

// give returns a token to key's bucket.
func (bs *buckets) give(key string) {
	if bs == nil {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.m[key]; ok {
		b.tokens = math.Min(bs.burst, b.tokens+1)
	}
}

// len reports how many buckets are remembered.
func (bs *buckets) len() int {
	if bs == nil {
		return 0
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return len(bs.m)
}

// limiter is the HTTP middleware that applies RateLimits.
type limiter struct {
	cfg     RateLimits
	perKey  *buckets
	signUp  *buckets
	failed  *buckets
	known   *knownTokens
	signUps map[string]bool
	exempt  map[string]bool
	now     func() time.Time
}

func newLimiter(cfg RateLimits) *limiter {
	cfg = cfg.withDefaults()
	l := &limiter{
		cfg:     cfg,
		perKey:  newBuckets(cfg.PerKey, cfg.Burst, cfg.MaxBuckets),
		signUp:  newBuckets(cfg.SignUp, cfg.SignUpBurst, cfg.MaxBuckets),
		failed:  newBuckets(cfg.FailedAuth, cfg.FailedAuthBurst, cfg.MaxBuckets),
		known:   newKnownTokens(cfg.MaxBuckets),
		signUps: map[string]bool{},
		exempt:  map[string]bool{},
		now:     time.Now,
	}
	if l.perKey == nil {
		// Limiting failed authentications without limiting requests would
		// only make a load test against wrong keys flaky.
		l.failed = nil
	}
	for _, n := range cfg.SignUpFunctions {
		l.signUps[n] = true
	}
	for _, n := range cfg.Exempt {
		l.exempt[n] = true
	}
	return l
}

// wrap limits next; function names the function a request is routed to
// ("" when none is).
func (l *limiter) wrap(next http.Handler, function func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := function(r)
		if l.exempt[name] {
			next.ServeHTTP(w, r)
			return
		}
		now := l.now()
		client := l.clientAddr(r)
		if l.signUps[name] {
			addr := "ip:" + client
			// A sign-up the service refuses (malformed, too large, the
			// wrong media type) creates nothing: it gives its sign-up token
			// back and is charged to the address's ordinary requests
			// instead, so a newcomer fixing a typo is not locked out for
			// minutes, and refused sign-ups are held to the ordinary rate.
			if ok, wait := l.perKey.peek(addr, now); !ok {
				tooMany(w, wait, "requests from this address")
				return
			}
			if ok, wait := l.signUp.take(addr, now); !ok {
				tooMany(w, wait, "sign-ups from this address")
				return
			}
			rec := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status >= 400 && rec.status < 500 {
				l.signUp.give(addr)
				l.perKey.take(addr, now)
			}
			return
		}
		if ok, wait := l.failed.peek("ip:"+client, now); !ok {
			tooMany(w, wait, "failed authentications from this address")
			return
		}
		token := bearerToken(r)
		key, known := l.known.get(token)
		if !known {
			key = "ip:" + client
		}
		if ok, wait := l.perKey.take(key, now); !ok {
			if known {
				tooMany(w, wait, "requests for this API key")
			} else {
				tooMany(w, wait, "requests from this address")
			}
			return
		}
		var authed string
		r = r.WithContext(functionapp.WithAuthNote(r.Context(), func(p string) { authed = p }))
		rec := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		switch {
		case rec.status == http.StatusUnauthorized:
			// A refused credential counts against its sender, not against
			// the bucket it was charged to, and is no longer taken for real.
			l.perKey.give(key)
			l.failed.take("ip:"+client, now)
			l.known.forget(token)
		case authed != "" && !known:
			// From now on this token has a bucket of its own.
			l.known.put(token, authed)
		}
	})
}

// bearerToken is the request's bearer token, or "" when it has none.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return token
}

// knownTokens remembers which bearer tokens have authenticated, by a
// digest, and whom as. Until a token has, its requests are charged to its
// sender's address: a made-up token on an endpoint that does not check it
// (sign-up's neighbours, the tracking feed) would otherwise open a fresh
// bucket with every guess.
type knownTokens struct {
	mu  sync.Mutex
	max int
	m   map[string]string
}

func newKnownTokens(max int) *knownTokens {
	return &knownTokens{max: max, m: map[string]string{}}
}

func (k *knownTokens) get(token string) (string, bool) {
	if token == "" {
		return "", false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.m[shortHash(token)]
	return p, ok
}

func (k *knownTokens) put(token, principal string) {
	if token == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) >= k.max {
		// Forgetting a token costs its owner one request charged to its
		// address, so random eviction is enough to bound the memory.
		for h := range k.m {
			if len(k.m) < k.max*9/10 {
				break
			}
			delete(k.m, h)
		}
	}
	k.m[shortHash(token)] = principal
}

func (k *knownTokens) forget(token string) {
	if token == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, shortHash(token))
}

// clientAddr is the address a request came from.
func (l *limiter) clientAddr(r *http.Request) string { return clientAddr(r, l.cfg.TrustForwardedFor) }

// clientAddr is the client r came from, as the per-client limits count it
// (clientKey): the last entry of X-Forwarded-For when the deployment
// trusts its proxy to set it, else the connection's remote address.
func clientAddr(r *http.Request, trustForwardedFor bool) string {
	if trustForwardedFor {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if a := strings.TrimSpace(parts[len(parts)-1]); a != "" {
				return clientKey(a)
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return clientKey(r.RemoteAddr)
	}
	return clientKey(host)
}

// clientKey is what the per-client limits (requests, sign-ups, failed
// authentications, bodies in flight, event streams, connections) count an
// address as: an IPv4 address (or one mapped into IPv6) by itself, an IPv6
// address by its /64. One subscriber is routinely given a whole /64 or
// more (RFC 6177), whose interface identifiers it may pick at will
// (RFC 4291 section 2.5.1, RFC 8981), so counting each IPv6 address apart
// would give one client a fresh allowance per request. Anything that is
// not an IP address counts as itself.
func clientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

func tooMany(w http.ResponseWriter, wait time.Duration, what string) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	resp := functionapp.Problem(http.StatusTooManyRequests, "", fmt.Sprintf("too many %s; retry after %d s", what, secs))
	resp.Header.Set("Retry-After", strconv.Itoa(secs))
	functionapp.WriteResponse(w, resp)
}

// statusWriter notes the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (to flush a
// stream, and to set its write deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// shortHash names a token without keeping it.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
