package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
)

// errHandlerPanic is the cause logged when a handler panicked.
var errHandlerPanic = errors.New("ingest: handler panic")

// serveSCIMRecovered runs serveSCIM and turns a panic of any handler into a
// logged 500 SCIM error (defence in depth: a bug answers one request with a
// clear error instead of dropping the connection). http.ErrAbortHandler is
// passed on: it is net/http's own way to abort a response.
func (s *Service) serveSCIMRecovered(q *request, rw *statusWriter) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
			panic(r)
		}
		cause := fmt.Errorf("%w: %v", errHandlerPanic, r)
		s.log.ErrorContext(q.ctx, "scim handler panicked", "method", q.r.Method, "path", q.r.URL.Path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		if rw.status != 0 {
			// The response has begun: nothing valid can follow.
			panic(http.ErrAbortHandler)
		}
		s.writeError(q, &Error{Status: http.StatusInternalServerError, Detail: "internal error (logged with the trace id); the request may not have completed", Err: cause})
	}()
	s.serveSCIM(q)
}
