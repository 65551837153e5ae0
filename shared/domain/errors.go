package domain

import (
	"errors"
	"fmt"
)

// Error codes shared by every layer; transports map them to statuses.
const (
	EINVALID       = "invalid"       // the input is malformed or breaks a rule
	EUNAUTHORIZED  = "unauthorized"  // no valid credential came with the request
	EFORBIDDEN     = "forbidden"     // the credential is valid but may not do this
	ENOTFOUND      = "not_found"     // the addressed thing does not exist, or is not the caller's
	ECONFLICT      = "conflict"      // the request contradicts the current state
	EPRECONDITION  = "precondition"  // an optimistic-concurrency check failed
	EUNPROCESSABLE = "unprocessable" // well-formed, but breaks a rule of what it addresses
	ETOOLARGE      = "too_large"     // a value is larger than the service keeps
	EUNAVAILABLE   = "unavailable"   // a dependency failed; retrying may succeed
	EINTERNAL      = "internal"      // a bug or an unexpected failure
)

// Error is the application error: a machine code, a message safe to show a
// client, and for validation failures the path of the offending field.
type Error struct {
	Code    string
	Message string
	Field   string
	Err     error // the underlying cause, never shown to clients
}

// Error implements the error interface.
func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports a validation failure of one field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unauthorized reports a request without a valid credential. The message
// never says which part of a presented key was wrong.
func Unauthorized() *Error {
	return &Error{Code: EUNAUTHORIZED, Field: "Authorization", Message: "must be Bearer and a valid API key"}
}

// Unprocessable reports a well-formed value that the addressed thing cannot
// take, such as a proof of delivery given too far from the dropoff.
func Unprocessable(field, format string, args ...any) *Error {
	return &Error{Code: EUNPROCESSABLE, Field: field, Message: fmt.Sprintf(format, args...)}
}

// TooLarge reports a value above the size the service keeps.
func TooLarge(field, format string, args ...any) *Error {
	return &Error{Code: ETOOLARGE, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Forbidden reports a valid caller asking for what it may not do.
func Forbidden(field, format string, args ...any) *Error {
	return &Error{Code: EFORBIDDEN, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a transient failure of a dependency.
func Unavailable(err error, format string, args ...any) *Error {
	return &Error{Code: EUNAVAILABLE, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorField returns the field path of the first *Error in err's chain.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// ErrorMessage returns the client-safe message of err; internal errors are
// reported generically so details do not leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }

// Permanent marks a queue message that can never succeed: the runtime
// has it dead-lettered instead of retrying it.
type Permanent struct {
	Err error
	// Elsewhere says the failure is another party's, not the service's (a
	// business's webhook that keeps failing): it is logged as a warning,
	// so that an alert on errors pages nobody for it.
	Elsewhere bool
}

// Error implements the error interface.
func (p *Permanent) Error() string { return "permanent: " + p.Err.Error() }

// Unwrap exposes the cause.
func (p *Permanent) Unwrap() error { return p.Err }

// IsElsewhere reports whether err is a permanent failure that is another
// party's (Permanent.Elsewhere).
func IsElsewhere(err error) bool {
	var p *Permanent
	return errors.As(err, &p) && p.Elsewhere
}

// IsPermanent reports whether err must not be retried.
func IsPermanent(err error) bool {
	var p *Permanent
	return errors.As(err, &p)
}
