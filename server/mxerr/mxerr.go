// Package mxerr defines Matrix errors: an errcode, a message and the HTTP
// status they travel with. httpx renders them; everything else returns them.
package mxerr

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is a client-visible Matrix error. Its message is shown to clients,
// so it must never carry internal detail.
type Error struct {
	Status  int            // HTTP status
	Code    string         // errcode, e.g. "M_FORBIDDEN"
	Message string         // error
	Extra   map[string]any // further top-level fields (soft_logout, retry_after_ms, UIA state)
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// With returns a copy of e with an extra top-level field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// As returns the Matrix error inside err, if there is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newf(status int, code, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Status: status, Code: code, Message: msg}
}

// Forbidden is 403 M_FORBIDDEN.
func Forbidden(format string, args ...any) *Error {
	return newf(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}

// NotFound is 404 M_NOT_FOUND.
func NotFound(format string, args ...any) *Error {
	return newf(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}

// Unrecognized is 404 M_UNRECOGNIZED: no such endpoint.
func Unrecognized() *Error {
	return newf(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
}

// MethodNotAllowed is 405 M_UNRECOGNIZED: the endpoint exists, not with this method.
func MethodNotAllowed() *Error {
	return newf(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request method")
}

// NotJSON is 400 M_NOT_JSON: the body is not valid JSON (or not an object).
func NotJSON(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_NOT_JSON", format, args...)
}

// BadJSON is 400 M_BAD_JSON: valid JSON of the wrong shape.
func BadJSON(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}

// MissingParam is 400 M_MISSING_PARAM.
func MissingParam(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_MISSING_PARAM", format, args...)
}

// InvalidParam is 400 M_INVALID_PARAM.
func InvalidParam(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_INVALID_PARAM", format, args...)
}

// TooLarge is 413 M_TOO_LARGE.
func TooLarge(format string, args ...any) *Error {
	return newf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", format, args...)
}

// MissingToken is 401 M_MISSING_TOKEN.
func MissingToken() *Error {
	return newf(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
}

// Unauthorized is 401 M_UNAUTHORIZED: a federation request whose X-Matrix
// signature is missing or does not verify.
func Unauthorized(format string, args ...any) *Error {
	return newf(http.StatusUnauthorized, "M_UNAUTHORIZED", format, args...)
}

// UnknownToken is 401 M_UNKNOWN_TOKEN. soft is the spec's soft_logout: the
// token expired and the client should refresh or log in again while
// keeping its encryption keys.
func UnknownToken(soft bool) *Error {
	e := newf(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown or expired access token")
	if soft {
		return e.With("soft_logout", true)
	}
	return e
}

// LimitExceeded is 429 M_LIMIT_EXCEEDED with a Retry-After header and, for
// older clients, retry_after_ms.
func LimitExceeded(retry time.Duration) *Error {
	e := newf(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many requests")
	e = e.With("retry_after_ms", retry.Milliseconds())
	e.RetryAfter = retry
	return e
}

// UserInUse is 400 M_USER_IN_USE.
func UserInUse() *Error {
	return newf(http.StatusBadRequest, "M_USER_IN_USE", "User ID already taken")
}

// InvalidUsername is 400 M_INVALID_USERNAME.
func InvalidUsername(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_INVALID_USERNAME", format, args...)
}

// UserDeactivated is 403 M_USER_DEACTIVATED.
func UserDeactivated() *Error {
	return newf(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
}

// WeakPassword is 400 M_WEAK_PASSWORD.
func WeakPassword(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_WEAK_PASSWORD", format, args...)
}

// Unknown is 400 M_UNKNOWN, for the spec's "other" failures.
func Unknown(format string, args ...any) *Error {
	return newf(http.StatusBadRequest, "M_UNKNOWN", format, args...)
}

// Internal is 500 M_UNKNOWN. The message shown is generic; the cause goes
// to the log with the request ID.
func Internal() *Error {
	return newf(http.StatusInternalServerError, "M_UNKNOWN", "Internal server error")
}
