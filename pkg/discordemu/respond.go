package discordemu

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// resp is a response produced by the pipeline.
type resp struct {
	status      int
	body        []byte // nil = no body
	ctype       string
	hdr         http.Header
	code        *int
	scope       string
	rateLimited bool
	global      bool
	banned      bool
	noInvalid   bool // never counted as invalid (shared 429, ban responses)
	edge        bool // an edge/proxy answer (Cloudflare, status fault): no per-route X-RateLimit-* headers
	fault       string
	special     *FaultAction // drop / stall_body applied while writing
	mangle      *FaultAction // malformed_rl_headers / wrong_rl_headers
}

type errObj struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
	Errors  any    `json:"errors,omitempty"`
}

func errBody(code int, msg string) errObj { return errObj{Code: code, Message: msg} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func jsonResp(status int, v any) *resp {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"message":"500: Internal Server Error","code":0}`)
		status = 500
	}
	return &resp{status: status, body: b, ctype: "application/json"}
}

func noContent() *resp { return &resp{status: http.StatusNoContent} }

func apiErr(status, code int, msg string) *resp {
	r := jsonResp(status, errBody(code, msg))
	c := code
	r.code = &c
	return r
}

// Discord's fixed errors (§6.0).
func errUnknownGuild() *resp  { return apiErr(404, 10004, "Unknown Guild") }
func errUnknownMember() *resp { return apiErr(404, 10007, "Unknown Member") }
func errUnknownRole() *resp   { return apiErr(404, 10011, "Unknown Role") }
func errUnknownUser() *resp   { return apiErr(404, 10013, "Unknown User") }
func errUnknownBan() *resp    { return apiErr(404, 10026, "Unknown Ban") }
func errMissingAccess() *resp { return apiErr(403, 50001, "Missing Access") }
func errMissingPerms() *resp  { return apiErr(403, 50013, "Missing Permissions") }
func errUnauthorized() *resp  { return apiErr(401, 0, "401: Unauthorized") }
func errNotFound() *resp      { return apiErr(404, 0, "404: Not Found") }
func errMethod() *resp        { return apiErr(405, 0, "405: Method Not Allowed") }
func errBadRequest() *resp    { return apiErr(400, 0, "400: Bad Request") }
func errInvalidJSON() *resp {
	return apiErr(400, 50109, "The request body contains invalid JSON.")
}

// fieldErr is one entry of a 50035 errors tree.
type fieldErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// formErr builds 400 50035 with errors {field: {_errors: [...]}}. A field may be
// "" for a top-level error.
func formErr(field, code, msg string) *resp {
	inner := map[string]any{"_errors": []fieldErr{{Code: code, Message: msg}}}
	var errs any = inner
	if field != "" {
		errs = map[string]any{field: inner}
	}
	r := jsonResp(400, errObj{Code: 50035, Message: "Invalid Form Body", Errors: errs})
	c := 50035
	r.code = &c
	return r
}

// f3 is a float written with exactly three decimals.
type f3 float64

// MarshalJSON writes three decimals.
func (f f3) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(f), 'f', 3, 64)), nil
}

type rateLimitBody struct {
	Message    string `json:"message"`
	RetryAfter *f3    `json:"retry_after,omitempty"`
	Global     bool   `json:"global"`
}

func retryAfterHeader(s float64) string {
	n := int(s)
	if float64(n) < s {
		n++
	}
	if n < 1 {
		n = 1
	}
	return strconv.Itoa(n)
}
