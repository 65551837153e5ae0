package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"mime"
	"net/http"
	"strings"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/functionapp"
	"github.com/fabrikam/dronedelivery/shared/logctx"
)

// access is who may call a function.
type access int

const (
	// anyone: health, sign-up, and the tracking page and feed, which the
	// unguessable tracking id guards.
	anyone access = iota
	// business: an account's API key; the account owns what it creates and
	// sees nothing of other accounts.
	business
	// operator: the operator key, for the fleet (drones and telemetry).
	operator
	// businessOrOperator: reading one delivery, which its business owns and
	// the operator's drones fly.
	businessOrOperator
	// droneOrOperator: posting a drone's telemetry, with the drone's own
	// device key (for that drone only) or the operator key (for any).
	droneOrOperator
)

// principal is who a request acts for, once authenticated.
type principal struct {
	accountID string // the account whose key was presented; "" for the operator
	droneID   string // the drone whose device key was presented
	keyPrefix string
	operator  bool
}

// rateKey names whom a rate limiter charges this principal's requests to:
// each account as one, whichever of its keys it uses (an account issues
// itself up to 10, which would otherwise multiply its share), each drone on
// its own, the operator as one.
func (p principal) rateKey() string {
	switch {
	case p.operator:
		return "operator"
	case p.droneID != "":
		return "drone:" + p.droneID
	}
	return "account:" + p.accountID
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// callerAccount returns the account a business request acts for. A handler
// reached without authentication, which only a wiring mistake can cause,
// fails closed.
func callerAccount(ctx context.Context) (string, error) {
	p, ok := ctx.Value(principalKey{}).(principal)
	if !ok || p.accountID == "" {
		return "", domain.Unauthorized()
	}
	return p.accountID, nil
}

// callerIsOperator reports whether the request came with the operator key.
func callerIsOperator(ctx context.Context) bool {
	p, ok := ctx.Value(principalKey{}).(principal)
	return ok && p.operator
}

// guard wraps a function with what every entry point checks before the
// handler runs: the caller's credential (401 without a valid one, 403 with
// one that may not call this function) and then, for a request with a
// body, its media type (415). Being part of the registry, it runs the same
// under every runtime.
func (h *Handlers) guard(a access, fn functionapp.HTTPFunc) functionapp.HTTPFunc {
	return func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
		if a != anyone {
			p, err := h.authenticate(ctx, req.Header.Get("Authorization"))
			if err != nil {
				return h.errorResponse(ctx, err)
			}
			switch {
			case p.droneID != "" && a != droneOrOperator:
				return h.errorResponse(ctx, domain.Forbidden("Authorization", "is a drone's device key; it may only post that drone's telemetry"))
			case p.droneID != "" && req.Params["id"] != p.droneID:
				return h.errorResponse(ctx, domain.Forbidden("Authorization", "is drone %s's device key; it may not post for another drone", p.droneID))
			case a == droneOrOperator && p.droneID == "" && !p.operator:
				return h.errorResponse(ctx, domain.Forbidden("Authorization", "is a business's API key; this endpoint needs the drone's device key or the operator key"))
			case a == business && p.operator:
				return h.errorResponse(ctx, domain.Forbidden("Authorization", "is the operator key; this endpoint needs a business's API key"))
			case a == operator && !p.operator:
				return h.errorResponse(ctx, domain.Forbidden("Authorization", "is a business's API key; this endpoint needs the operator key"))
			}
			ctx = withPrincipal(ctx, p)
			functionapp.NoteAuthenticated(ctx, p.rateKey())
			if p.accountID != "" {
				ctx = logctx.With(ctx, "accountId", p.accountID)
			}
		}
		if resp := checkContentType(req); resp != nil {
			return resp
		}
		return fn(ctx, req)
	}
}

// guardStream is guard for a stream: the stream runs only for a caller
// guard lets through, with the context guard gives it.
func (h *Handlers) guardStream(a access, fn functionapp.StreamFunc) functionapp.StreamFunc {
	return func(ctx context.Context, req *functionapp.Request, s functionapp.Stream) *functionapp.Response {
		var admitted context.Context
		resp := h.guard(a, func(ctx context.Context, _ *functionapp.Request) *functionapp.Response {
			admitted = ctx
			return nil
		})(ctx, req)
		if admitted == nil {
			return resp
		}
		return fn(admitted, req, s)
	}
}

// guardForm is guard for the one function anyone may post a form to, the
// unsubscribe link's: a mail client's one-click unsubscribe posts
// "List-Unsubscribe=One-Click" as multipart/form-data or
// application/x-www-form-urlencoded (RFC 8058, section 3.1:
// https://www.rfc-editor.org/rfc/rfc8058#section-3.1), and so does the
// link's page. The function does not read the body; any other media type
// is still refused.
func (h *Handlers) guardForm(fn functionapp.HTTPFunc) functionapp.HTTPFunc {
	return func(ctx context.Context, req *functionapp.Request) *functionapp.Response {
		if len(req.Body) > 0 {
			mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
			if err != nil || (mt != "application/x-www-form-urlencoded" && mt != "multipart/form-data") {
				resp := functionapp.Problem(http.StatusUnsupportedMediaType, "Content-Type", "must be application/x-www-form-urlencoded or multipart/form-data")
				resp.Header.Set("Accept", "application/x-www-form-urlencoded, multipart/form-data")
				return resp
			}
		}
		return fn(ctx, req)
	}
}

// checkContentType refuses a body that does not say it is JSON: every body
// the API takes is JSON, and a form or text post is a client mistake or a
// cross-site request trying its luck.
func checkContentType(req *functionapp.Request) *functionapp.Response {
	if len(req.Body) == 0 {
		return nil
	}
	ct := req.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		cs, ok := params["charset"]
		if !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	resp := functionapp.Problem(http.StatusUnsupportedMediaType, "Content-Type", "must be application/json (charset utf-8, if given)")
	resp.Header.Set("Accept", "application/json")
	return resp
}

// authenticate resolves a bearer credential: an account's API key, looked
// up by its prefix with one point read (or none, when cached), or the
// operator key. Every failure is the same 401, so a caller learns nothing
// about which part of a guessed key was right.
func (h *Handlers) authenticate(ctx context.Context, header string) (principal, error) {
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return principal{}, domain.Unauthorized()
	}
	if prefix, ok := domain.SplitAPIKey(token); ok {
		k, err := h.findKey(ctx, prefix)
		if err != nil {
			return principal{}, err
		}
		sum := sha256.Sum256([]byte(token))
		if k == nil || k.RevokedAt != nil || !equalHex(k.Hash, sum[:]) {
			return principal{}, domain.Unauthorized()
		}
		return principal{accountID: k.AccountID, droneID: k.DroneID, keyPrefix: prefix}, nil
	}
	if h.operatorHash != nil {
		// Comparing hashes keeps the comparison constant-time whatever the
		// length of what was presented.
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], h.operatorHash) == 1 {
			return principal{operator: true}, nil
		}
	}
	return principal{}, domain.Unauthorized()
}

func equalHex(stored string, sum []byte) bool {
	want, err := hex.DecodeString(stored)
	return err == nil && subtle.ConstantTimeCompare(want, sum) == 1
}

// findKey returns the key stored under prefix, or nil when there is none.
func (h *Handlers) findKey(ctx context.Context, prefix string) (*domain.APIKey, error) {
	now := h.clock.Now()
	if k, ok := h.keys.get(prefix, now); ok {
		return k, nil
	}
	stamp := h.keys.stamp()
	k, err := h.store.APIKeys.Find(ctx, prefix)
	if domain.IsCode(err, domain.ENOTFOUND) {
		k, err = nil, nil
	}
	if err != nil {
		return nil, domain.Unavailable(err, "the API key could not be checked; retry")
	}
	h.keys.put(prefix, k, now, stamp)
	return k, nil
}
