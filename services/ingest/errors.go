package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// SCIM error types (RFC 7644 §3.12, table 9).
const (
	scimInvalidFilter = "invalidFilter"
	scimTooMany       = "tooMany"
	scimUniqueness    = "uniqueness"
	scimInvalidSyntax = "invalidSyntax"
	scimInvalidPath   = "invalidPath"
	scimNoTarget      = "noTarget"
	scimInvalidValue  = "invalidValue"
	scimMutability    = "mutability"
)

// Error is a SCIM protocol error: an HTTP status, an optional scimType and a
// detail safe to show to the client (it never contains a secret).
type Error struct {
	Status   int
	ScimType string
	Detail   string
	// Err is the cause, for logs only.
	Err error
}

func (e *Error) Error() string {
	s := strconv.Itoa(e.Status)
	if e.ScimType != "" {
		s += " " + e.ScimType
	}
	s += ": " + e.Detail
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func badRequest(scimType, format string, args ...any) *Error {
	return errf(http.StatusBadRequest, scimType, format, args...)
}

func notFound(kind, id string) *Error {
	return errf(http.StatusNotFound, "", "%s %q not found", kind, id)
}

// Sentinel errors of the service layer, mapped to SCIM at the edge.
var (
	// errPreconditionFailed: If-Match did not match the current version.
	errPreconditionFailed = errors.New("ingest: precondition failed")
	// errNotWritten marks a write JetStream certainly did not store (the
	// client was not connected, or the server refused it) — as opposed to
	// one it did not confirm in time, which may have been stored.
	errNotWritten = errors.New("ingest: not written")
	// errPartial marks a failure of a multi-record operation after some of
	// its records may have been written.
	errPartial = errors.New("ingest: operation partly applied")
)

// notWritten marks err as a failure that left nothing visible behind.
func notWritten(err error) error {
	if err == nil || errors.Is(err, errNotWritten) {
		return err
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	return errors.Join(err, errNotWritten)
}

// partial marks err as the failure of a multi-record operation part-way.
func partial(err error) error {
	if err == nil || errors.Is(err, errPartial) {
		return err
	}
	var se *Error
	if errors.As(err, &se) {
		return err // a 4xx decided before anything was written
	}
	return errors.Join(err, errPartial)
}

// toSCIM maps any error to a SCIM error. Store unavailability is 503: it is
// not the client's fault and the write did not happen.
func toSCIM(err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	switch {
	case errors.Is(err, errPreconditionFailed):
		return &Error{Status: http.StatusPreconditionFailed, Detail: "resource version does not match If-Match", Err: err}
	case errors.Is(err, eventbus.ErrConflict):
		return &Error{Status: http.StatusConflict, Detail: "concurrent modification, retry the request", Err: err}
	case errors.Is(err, eventbus.ErrUnavailable) && errors.Is(err, errNotWritten) && !errors.Is(err, errPartial):
		return &Error{Status: http.StatusServiceUnavailable, Detail: "storage temporarily unavailable; nothing was changed, retry later", Err: err}
	case errors.Is(err, eventbus.ErrUnavailable) || errors.Is(err, errPartial):
		// Not confirmed: the record may have been stored, or a multi-record
		// change stopped part-way. Every write is idempotent under retry.
		return &Error{Status: http.StatusServiceUnavailable, Detail: "storage temporarily unavailable; the change was not confirmed and may have been applied in part; retrying the same request is safe", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Detail: "internal error", Err: err}
}

func errorBody(e *Error) map[string]any {
	b := map[string]any{
		"schemas": []string{schemaError},
		"status":  strconv.Itoa(e.Status),
		"detail":  e.Detail,
	}
	if e.ScimType != "" {
		b["scimType"] = e.ScimType
	}
	return b
}
