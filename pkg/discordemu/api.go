package discordemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// identity is the resolved Authorization of a request.
type identity struct {
	kind   string // bot, bearer, none, invalid
	appID  string
	userID string // bot user id for bot identity, the user for bearer
	token  *tokenState
}

func (i identity) rateKey(ip string) string {
	switch i.kind {
	case "bot":
		return "bot:" + i.appID
	case "bearer":
		return "bearer:" + i.appID + ":" + i.userID
	}
	return "ip:" + ip
}

// call carries one API request through the stages of §6.0.
type call struct {
	e         *Emulator
	r         *http.Request
	cfg       Config
	now       time.Time
	route     *routeDef
	params    map[string]string
	version   string
	ip        string
	id        identity
	body      []byte
	obj       map[string]json.RawMessage // JSON object body
	arr       []json.RawMessage          // JSON array body
	form      map[string][]string
	reason    *string
	committed bool
	rl        *rlResult
	rec       *Record
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serveAPI runs every /api request through the common stages.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := e.now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	cfg := e.config()
	rec := &Record{
		Seq: e.rec.nextSeq(), ReceivedAt: start, ClientIP: clientIP(r), Method: r.Method, Path: r.URL.Path,
		Query: r.URL.Query(), UserAgent: r.UserAgent(), ContentType: r.Header.Get("Content-Type"),
		BodyRaw: string(body), Params: map[string]string{}, Flags: []string{},
	}
	if ci, ok := r.Context().Value(connKey).(*connInfo); ok {
		rec.ConnID = ci.id
	}
	if json.Valid(body) && len(body) > 0 {
		rec.BodyJSON = json.RawMessage(append([]byte(nil), body...))
	}
	if rec.UserAgent == "" {
		rec.Flags = append(rec.Flags, FlagMissingUserAgent)
	}
	c := &call{e: e, r: r, cfg: cfg, now: start, ip: rec.ClientIP, body: body, rec: rec, params: map[string]string{}}
	res := e.pipeline(c)
	if c.rl != nil {
		defer e.lim.done(c.rl)
	}
	e.finish(w, c, res)
}

// pipeline runs stages 1–11 of §6.0 and returns the response.
func (e *Emulator) pipeline(c *call) *resp {
	r, rec := c.r, c.rec
	// Stage 1: version and route match.
	p := strings.TrimPrefix(r.URL.Path, "/api")
	if strings.HasPrefix(p, "/v") {
		rest := p[2:]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			i = len(rest)
		}
		v, err := strconv.Atoi(rest[:i])
		if err != nil {
			return errNotFound()
		}
		c.version = rest[:i]
		p = rest[i:]
		switch {
		case v >= 6 && v <= 10:
		case v >= 3 && v <= 5:
			return errBadRequest()
		default:
			return errNotFound()
		}
	}
	rec.APIVersion = c.version
	route, params, pathOK := matchRoute(r.Method, p)
	if route == nil {
		if pathOK {
			return errMethod()
		}
		return errNotFound()
	}
	c.route, c.params = route, params
	rec.Route, rec.Params = route.id, params
	if route.mutating {
		if raw, ok := r.Header["X-Audit-Log-Reason"]; ok && len(raw) > 0 {
			v := raw[0]
			rec.AuditReasonRaw = &v
			dec, okEnc := DecodeAuditReason(v)
			if !okEnc {
				rec.Flags = append(rec.Flags, FlagReasonNotEncoded)
			}
			rec.AuditReason = &dec
			c.reason = &dec
		}
		if r.URL.Query().Has("reason") {
			rec.Flags = append(rec.Flags, FlagLegacyReasonQuery)
		}
	}
	// Stage 2: Cloudflare ban.
	if b, ok := e.lim.banned(c.ip, c.now); ok {
		return banResp(b.Format)
	}
	// Stage 3: authentication.
	if !route.noAuth {
		c.id = e.resolveAuth(r.Header.Get("Authorization"))
		rec.Auth = RecordAuth{Kind: c.id.kind, ApplicationID: c.id.appID}
		if c.id.kind == "bearer" {
			rec.Auth.UserID = c.id.userID
		}
		if c.id.kind == "invalid" || c.id.kind == "none" || (c.id.kind == "bearer" && !route.bearerOK) {
			if c.cfg.Profile != "off" {
				_, _, n := e.lim.globalCheck("ip:"+c.ip, c.now, c.cfg.GlobalLimitPerSec, c.cfg.scale())
				rec.GlobalWindowCount = n
			}
			rec.Identity = "ip:" + c.ip
			return errUnauthorized()
		}
	} else {
		c.id = identity{kind: "none"}
		rec.Auth = RecordAuth{Kind: "none"}
	}
	rec.Identity = c.id.rateKey(c.ip)
	// Stage 4: global limit.
	if c.cfg.Profile != "off" {
		ok, retry, n := e.lim.globalCheck(rec.Identity, c.now, c.cfg.GlobalLimitPerSec, c.cfg.scale())
		rec.GlobalWindowCount = n
		if !ok {
			return globalRateLimit(retry)
		}
	}
	// Stage 5: faults before.
	var pending []*FaultAction
	if fr, act := e.faults.pick(c, "before"); act != nil {
		out, cont := e.applyFault(c, fr, act, nil)
		if !cont {
			return out
		}
		pending = append(pending, act)
	}
	// Stage 6: per-route bucket.
	if c.cfg.Profile != "off" {
		c.rl = e.lim.consume(rec.Identity, route.id, params, c.now, c.cfg.scale(), c.cfg.RateLimit.Algorithm)
		if c.rl != nil {
			rec.Bucket = &RecordBucket{Name: c.rl.def.Name, Major: c.rl.major, Limit: c.rl.limit, RemainingAfter: c.rl.remaining, ResetAfter: c.rl.resetAfter}
			if !c.rl.allowed {
				return userRateLimit(c.rl)
			}
		}
	}
	res := e.stageBodyAndHandle(c)
	// Stage 11: faults after_commit. Only requests that changed state match
	// (and count towards nth/skip/times): errors and 2xx no-ops (e.g. adding a
	// role the member already has) never committed, so they are left alone.
	if c.committed {
		if fr, act := e.faults.pick(c, "after_commit"); act != nil {
			out, cont := e.applyFault(c, fr, act, res)
			if !cont {
				res = out
			} else {
				pending = append(pending, act)
			}
		}
	}
	for _, a := range pending {
		switch a.Type {
		case "stall_body", "drop":
			res.special = a
		case "malformed_rl_headers", "wrong_rl_headers":
			res.mangle = a
		}
	}
	return res
}

// stageBodyAndHandle runs stages 7–10.
func (e *Emulator) stageBodyAndHandle(c *call) *resp {
	// Snowflake path params.
	for _, k := range []string{"guild_id", "user_id", "role_id"} {
		v, ok := c.params[k]
		if !ok || (k == "user_id" && v == "@me" && c.route.id == "users_me") {
			continue
		}
		if !isSnowflake(v) {
			return formErr(k, "NUMBER_TYPE_COERCE", "Value \""+v+"\" is not snowflake.")
		}
	}
	// Stage 7: body.
	ct := c.r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	hasBody := len(bytes.TrimSpace(c.body)) > 0
	switch c.route.body {
	case bodyJSONOptional, bodyJSONRequired:
		if hasBody && mt != "application/json" {
			return formErr("", "CONTENT_TYPE_INVALID", "Expected \"Content-Type\" header to be one of {'application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'}.")
		}
		if !hasBody {
			if c.route.id == "role_positions" {
				return formErr("", "BASE_TYPE_REQUIRED", "This field is required")
			}
			c.obj = map[string]json.RawMessage{}
			break
		}
		var v any
		if err := json.Unmarshal(c.body, &v); err != nil {
			return errInvalidJSON()
		}
		if c.route.id == "role_positions" {
			if err := json.Unmarshal(c.body, &c.arr); err != nil {
				return formErr("", "BASE_TYPE_ARRAY", "Must be an array.")
			}
		} else if err := json.Unmarshal(c.body, &c.obj); err != nil {
			return formErr("", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
		}
	case bodyForm:
		if mt != "application/x-www-form-urlencoded" {
			return oauthErr(400, "unsupported_grant_type", "Unsupported content type; use application/x-www-form-urlencoded")
		}
		vals, err := parseForm(c.body)
		if err != nil {
			return oauthErr(400, "invalid_request", "Malformed form body")
		}
		c.form = vals
	}
	if c.reason != nil && len([]rune(*c.reason)) > MaxAuditReasonLen {
		return formErr("audit_log_reason", "BASE_TYPE_MAX_LENGTH", "Must be 512 or fewer in length.")
	}
	if c.cfg.ConsistencyLagMS > 0 && c.route.mutating {
		c.e.seedHistory()
	}
	// Stages 8–10 are in the handler.
	return c.route.handler(c)
}

// finish writes the response (stage 12) and records it (stage 13).
func (e *Emulator) finish(w http.ResponseWriter, c *call, res *resp) {
	rec := c.rec
	cfg := c.cfg
	if d := cfg.Latency.Base; d > 0 || cfg.Latency.Jitter > 0 {
		ms := float64(d) + e.randFloat()*float64(cfg.Latency.Jitter)
		sleepCtx(c.r.Context(), time.Duration(ms*float64(time.Millisecond)))
	}
	h := w.Header()
	for k, v := range res.hdr {
		h[k] = v
	}
	if c.rl != nil && !res.global && !res.banned && !res.edge {
		c.rl.headers(h)
		if res.rateLimited && res.scope == "user" {
			h.Set("X-RateLimit-Remaining", "0")
		}
	}
	if res.mangle != nil {
		mangleHeaders(h, res.mangle)
	}
	if res.body != nil && res.ctype != "" {
		h.Set("Content-Type", res.ctype)
	}
	// Outcome. A fault tag set at stage before by an action that lets the
	// request continue (stall_body, header mangling) is kept.
	prevFault := rec.Outcome.Fault
	rec.Outcome = Outcome{Status: res.status, Code: res.code, RateLimited: res.rateLimited, Global: res.global,
		Committed: c.committed, Banned: res.banned}
	if res.scope != "" {
		s := res.scope
		rec.Outcome.Scope = &s
	}
	if res.fault != "" {
		f := res.fault
		rec.Outcome.Fault = &f
	} else {
		rec.Outcome.Fault = prevFault
	}
	if a := res.special; a != nil && (a.Type == "drop" || (a.Type == "stall_body" && a.Then == "drop")) {
		rec.Outcome.Dropped = true
		if a.Type == "drop" { // the client never saw a status line
			rec.Outcome.DroppedStatus, rec.Outcome.Status = res.status, 0
		}
	}
	if st := rec.Outcome.Status; (st == 401 || st == 403 || st == 429) && !res.noInvalid && !res.banned {
		rec.Outcome.InvalidCounted = true
		if e.lim.countInvalid(c.ip, e.now(), &cfg) {
			e.log.Warn("discordemu: invalid-request limit reached; IP banned", "ip", c.ip)
		}
	}
	rec.ResponseHeaders = map[string]string{}
	for k, v := range h {
		if len(v) > 0 {
			rec.ResponseHeaders[k] = v[0]
		}
	}
	rec.ResponseBody = string(res.body)
	// Recorded before the client can see the outcome (a response or a
	// dropped connection), so a test that reads the recorder right after
	// its call returns finds it. A stalled body is recorded once it ends.
	record := func() {
		rec.DurationMS = float64(e.now().Sub(rec.ReceivedAt).Microseconds()) / 1000
		e.rec.add(rec)
	}
	if res.special != nil {
		switch res.special.Type {
		case "drop":
			record()
			dropConn(w, res.special.Mode)
			return
		case "stall_body":
			defer record()
			e.stallBody(c, w, res)
			return
		}
	}
	record()
	w.WriteHeader(res.status)
	if res.body != nil && res.status != http.StatusNoContent {
		_, _ = w.Write(res.body)
	}
}

func dropConn(w http.ResponseWriter, mode string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && mode == "reset" {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (e *Emulator) stallBody(c *call, w http.ResponseWriter, res *resp) {
	a := res.special
	w.Header().Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(res.status)
	half := len(res.body) / 2
	_, _ = w.Write(res.body[:half])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	sleepCtx(c.r.Context(), e.faultDuration(a))
	if a.Then == "drop" {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, buf, err := hj.Hijack(); err == nil {
				_ = buf.Flush()
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(res.body[half:])
}

var _ = bufio.NewReader

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// resolveAuth maps an Authorization header to an identity.
func (e *Emulator) resolveAuth(h string) identity {
	if h == "" {
		return identity{kind: "none"}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case strings.HasPrefix(h, "Bot "):
		tok := strings.TrimPrefix(h, "Bot ")
		for _, a := range e.w.Apps {
			if a.BotToken != "" && a.BotToken == tok {
				return identity{kind: "bot", appID: a.ID, userID: a.BotUserID}
			}
		}
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimPrefix(h, "Bearer ")
		if t := e.w.Tokens[tok]; t != nil && !t.Revoked && e.now().Before(t.ExpiresAt) {
			cp := *t
			return identity{kind: "bearer", appID: t.AppID, userID: t.UserID, token: &cp}
		}
	}
	return identity{kind: "invalid"}
}

func banResp(format string) *resp {
	if format == "html" {
		return &resp{status: 429, body: []byte("error code: 1015"), ctype: "text/html", banned: true, noInvalid: true}
	}
	r := jsonResp(429, errBody(0, "You are being blocked from accessing our API temporarily due to exceeding our rate limits frequently. Please read our docs at https://discord.com/developers/docs/topics/rate-limits to prevent this moving forward."))
	r.banned, r.noInvalid = true, true
	return r
}

func globalRateLimit(retry float64) *resp {
	ra := f3(retry)
	r := jsonResp(429, rateLimitBody{Message: "You are being rate limited.", RetryAfter: &ra, Global: true})
	r.hdr = http.Header{}
	r.hdr.Set("Retry-After", retryAfterHeader(retry))
	r.hdr.Set("X-RateLimit-Global", "true")
	r.hdr.Set("X-RateLimit-Scope", "global")
	r.rateLimited, r.global, r.scope = true, true, "global"
	return r
}

func userRateLimit(rl *rlResult) *resp {
	ra := f3(rl.retryAfter)
	r := jsonResp(429, rateLimitBody{Message: "You are being rate limited.", RetryAfter: &ra, Global: false})
	r.hdr = http.Header{}
	r.hdr.Set("Retry-After", retryAfterHeader(rl.retryAfter))
	r.hdr.Set("X-RateLimit-Scope", "user")
	r.rateLimited, r.scope = true, "user"
	return r
}
