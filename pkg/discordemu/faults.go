package discordemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// StringList decodes from a single string or a list of strings.
type StringList []string

// UnmarshalJSON accepts "x" or ["x","y"].
func (s *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings: %w", err)
	}
	*s = many
	return nil
}

// FaultMatch selects the requests a fault rule applies to.
type FaultMatch struct {
	Route     StringList `json:"route,omitempty"`
	Method    string     `json:"method,omitempty"`
	GuildID   string     `json:"guild_id,omitempty"`
	UserID    string     `json:"user_id,omitempty"`
	RoleID    string     `json:"role_id,omitempty"`
	Auth      string     `json:"auth,omitempty"`
	PathRegex string     `json:"path_regex,omitempty"`
}

// FaultWhen limits when a matching rule fires.
type FaultWhen struct {
	Nth         []int    `json:"nth,omitempty"`
	Skip        int      `json:"skip,omitempty"`
	Times       int      `json:"times,omitempty"`
	Probability float64  `json:"probability,omitempty"`
	AfterMS     float64  `json:"after_ms,omitempty"`
	UntilMS     *float64 `json:"until_ms,omitempty"`
}

// FaultAction is what a fault rule does (§9).
type FaultAction struct {
	// Type: status, error, cloudflare_5xx, rate_limit, cloudflare_ban, delay,
	// stall_body, drop, malformed_rl_headers, wrong_rl_headers.
	Type    string            `json:"type"`
	Status  int               `json:"status,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Code    int               `json:"code,omitempty"`
	Message string            `json:"message,omitempty"`
	// rate_limit
	Scope                     string  `json:"scope,omitempty"`
	RetryAfter                float64 `json:"retry_after,omitempty"`
	OmitRetryAfter            bool    `json:"omit_retry_after,omitempty"`
	BodyGlobalMismatch        bool    `json:"body_global_mismatch,omitempty"`
	IncludeResetAfterOnGlobal bool    `json:"include_reset_after_on_global,omitempty"`
	// cloudflare_ban
	DurationS float64 `json:"duration_s,omitempty"`
	Format    string  `json:"format,omitempty"`
	// delay / stall_body
	MS     float64 `json:"ms,omitempty"`
	Scaled bool    `json:"scaled,omitempty"`
	Then   string  `json:"then,omitempty"`
	// drop
	Mode string `json:"mode,omitempty"`
	// malformed_rl_headers / wrong_rl_headers
	Field string `json:"field,omitempty"`
	Value string `json:"value,omitempty"`
	// wrong_rl_headers explicit values
	Remaining  *int     `json:"remaining,omitempty"`
	Limit      *int     `json:"limit,omitempty"`
	ResetAfter *float64 `json:"reset_after,omitempty"`
}

// FaultRule is one fault-injection rule.
type FaultRule struct {
	ID     string      `json:"id,omitempty"`
	Match  FaultMatch  `json:"match"`
	When   FaultWhen   `json:"when"`
	Stage  string      `json:"stage,omitempty"` // before (default) or after_commit
	Action FaultAction `json:"action"`
	// Read-only counters.
	Matches int `json:"matches"`
	Fired   int `json:"fired"`

	created time.Time
	re      *regexp.Regexp
}

type faultSet struct {
	mu    sync.Mutex
	rules []*FaultRule
	seq   int
}

func (f *faultSet) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

var faultTypes = map[string]bool{"status": true, "error": true, "cloudflare_5xx": true, "rate_limit": true,
	"cloudflare_ban": true, "delay": true, "stall_body": true, "drop": true, "malformed_rl_headers": true, "wrong_rl_headers": true}

func (f *faultSet) add(r FaultRule, now time.Time) (string, error) {
	if !faultTypes[r.Action.Type] {
		return "", fmt.Errorf("unknown fault action type %q", r.Action.Type)
	}
	if r.Stage == "" {
		r.Stage = "before"
	}
	if r.Stage != "before" && r.Stage != "after_commit" {
		return "", fmt.Errorf("unknown fault stage %q", r.Stage)
	}
	if r.Match.PathRegex != "" {
		re, err := regexp.Compile(r.Match.PathRegex)
		if err != nil {
			return "", fmt.Errorf("fault path_regex: %w", err)
		}
		r.re = re
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	if r.ID == "" {
		r.ID = "fault-" + strconv.Itoa(f.seq)
	}
	for _, x := range f.rules {
		if x.ID == r.ID {
			return "", fmt.Errorf("fault %q already exists", r.ID)
		}
	}
	r.created = now
	r.Matches, r.Fired = 0, 0
	f.rules = append(f.rules, &r)
	return r.ID, nil
}

func (f *faultSet) remove(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.ID == id {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
			return true
		}
	}
	return false
}

func (f *faultSet) list() []FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FaultRule, len(f.rules))
	for i, r := range f.rules {
		out[i] = *r
	}
	return out
}

func (m FaultMatch) matches(c *call) bool {
	if len(m.Route) > 0 {
		ok := false
		for _, r := range m.Route {
			if r == "*" || r == c.route.id {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if m.Method != "" && m.Method != c.r.Method {
		return false
	}
	if (m.GuildID != "" && m.GuildID != c.params["guild_id"]) || (m.UserID != "" && m.UserID != c.params["user_id"]) ||
		(m.RoleID != "" && m.RoleID != c.params["role_id"]) {
		return false
	}
	if m.Auth != "" {
		k := c.id.kind
		if k == "invalid" {
			k = "none"
		}
		if m.Auth != k {
			return false
		}
	}
	return true
}

// pick returns the first rule that matches and fires at this stage.
func (f *faultSet) pick(c *call, stage string) (*FaultRule, *FaultAction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Stage != stage || !r.Match.matches(c) {
			continue
		}
		if r.re != nil && !r.re.MatchString(c.r.URL.Path) {
			continue
		}
		elapsed := c.now.Sub(r.created).Seconds() * 1000 / c.cfg.scale()
		if elapsed < r.When.AfterMS || (r.When.UntilMS != nil && elapsed > *r.When.UntilMS) {
			continue
		}
		r.Matches++
		n := r.Matches - r.When.Skip
		if n <= 0 {
			continue
		}
		if len(r.When.Nth) > 0 {
			hit := false
			for _, k := range r.When.Nth {
				if k == n {
					hit = true
				}
			}
			if !hit {
				continue
			}
		}
		if r.When.Times > 0 && r.Fired >= r.When.Times {
			continue
		}
		if r.When.Probability > 0 && c.e.randFloat() >= r.When.Probability {
			continue
		}
		r.Fired++
		a := r.Action
		return r, &a
	}
	// chaos
	if ch := c.cfg.Chaos; stage == "before" && ch.Probability > 0 && len(ch.Actions) > 0 && c.e.randFloat() < ch.Probability {
		i := int(c.e.randFloat() * float64(len(ch.Actions)))
		if i >= len(ch.Actions) {
			i = len(ch.Actions) - 1
		}
		a := ch.Actions[i]
		return &FaultRule{ID: "chaos"}, &a
	}
	return nil, nil
}

func (e *Emulator) faultDuration(a *FaultAction) time.Duration {
	d := time.Duration(a.MS * float64(time.Millisecond))
	if a.Scaled {
		d = time.Duration(float64(d) * e.config().scale())
	}
	return d
}

// applyFault applies an action. It returns the response to send and whether the
// pipeline continues normally (delay and header/body mangling continue).
func (e *Emulator) applyFault(c *call, rule *FaultRule, a *FaultAction, current *resp) (*resp, bool) {
	tag := rule.ID
	mark := func(r *resp) *resp {
		r.fault = tag
		return r
	}
	switch a.Type {
	case "delay":
		sleepCtx(c.r.Context(), e.faultDuration(a))
		return nil, true
	case "stall_body", "drop", "malformed_rl_headers", "wrong_rl_headers":
		if current != nil {
			current.fault = tag
		} else {
			c.rec.Outcome.Fault = &tag
		}
		if a.Type == "drop" && c.route != nil && current == nil {
			// at stage before the request is not applied: respond by dropping now
			r := &resp{status: 0, special: a}
			return mark(r), false
		}
		return nil, true
	case "status":
		st := a.Status
		if st == 0 {
			st = 500
		}
		var r *resp
		if len(a.Body) > 0 {
			var s string
			if json.Unmarshal(a.Body, &s) == nil {
				r = &resp{status: st, body: []byte(s), ctype: "text/plain; charset=utf-8"}
			} else {
				r = &resp{status: st, body: []byte(a.Body), ctype: "application/json"}
			}
		} else {
			r = apiErr(st, 0, strconv.Itoa(st)+": "+http.StatusText(st))
		}
		r.hdr = http.Header{}
		for k, v := range a.Headers {
			r.hdr.Set(k, v)
		}
		r.edge = true // only the configured headers, at either stage
		return mark(r), false
	case "error":
		st := a.Status
		if st == 0 {
			st = 400
		}
		msg := a.Message
		if msg == "" {
			msg = http.StatusText(st)
		}
		return mark(apiErr(st, a.Code, msg)), false
	case "cloudflare_5xx":
		st := a.Status
		if st == 0 {
			st = 502
		}
		return mark(&resp{status: st, body: []byte("error code: " + strconv.Itoa(st)), ctype: "text/html", edge: true}), false
	case "cloudflare_ban":
		d := a.DurationS
		if d <= 0 {
			d = c.cfg.CloudflareBanSeconds
		}
		f := a.Format
		if f == "" {
			f = c.cfg.CloudflareBanFormat
		}
		e.lim.ban(c.ip, c.now.Add(secs(d*c.cfg.scale())), f)
		return mark(banResp(f)), false
	case "rate_limit":
		return mark(e.faultRateLimit(c, a)), false
	}
	return nil, true
}

func (e *Emulator) faultRateLimit(c *call, a *FaultAction) *resp {
	scope := a.Scope
	if scope == "" {
		scope = "user"
	}
	global := scope == "global"
	bodyGlobal := global
	if a.BodyGlobalMismatch {
		bodyGlobal = !global
	}
	msg := "You are being rate limited."
	if scope == "shared" {
		msg = "The resource is being rate limited."
	}
	b := rateLimitBody{Message: msg, Global: bodyGlobal}
	if !a.OmitRetryAfter {
		ra := f3(a.RetryAfter)
		b.RetryAfter = &ra
	}
	r := jsonResp(429, b)
	r.hdr = http.Header{}
	r.hdr.Set("Retry-After", retryAfterHeader(a.RetryAfter))
	r.hdr.Set("X-RateLimit-Scope", scope)
	r.rateLimited, r.scope = true, scope
	if global {
		r.global = true
		r.hdr.Set("X-RateLimit-Global", "true")
		if a.IncludeResetAfterOnGlobal {
			r.hdr.Set("X-RateLimit-Reset-After", f3s(a.RetryAfter))
		}
	} else if c.cfg.Profile != "off" {
		if p := e.lim.peek(c.rec.Identity, c.route.id, c.params, c.now, c.cfg.scale(), c.cfg.RateLimit.Algorithm); p != nil {
			p.headers(r.hdr)
			if scope == "user" {
				r.hdr.Set("X-RateLimit-Remaining", "0")
				r.hdr.Set("X-RateLimit-Reset-After", f3s(a.RetryAfter))
			}
		}
	}
	if scope == "shared" {
		r.noInvalid = true
	}
	return r
}

func mangleHeaders(h http.Header, a *FaultAction) {
	switch a.Type {
	case "malformed_rl_headers":
		f := a.Field
		if f == "" {
			f = "Remaining"
		}
		v := a.Value
		if v == "" {
			v = "abc"
		}
		h.Set("X-RateLimit-"+f, v)
	case "wrong_rl_headers":
		if h.Get("X-RateLimit-Limit") == "" {
			return
		}
		rem, _ := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
		lim, _ := strconv.Atoi(h.Get("X-RateLimit-Limit"))
		if a.Remaining != nil {
			h.Set("X-RateLimit-Remaining", strconv.Itoa(*a.Remaining))
		} else {
			h.Set("X-RateLimit-Remaining", strconv.Itoa(rem+5))
		}
		if a.Limit != nil {
			h.Set("X-RateLimit-Limit", strconv.Itoa(*a.Limit))
		} else {
			h.Set("X-RateLimit-Limit", strconv.Itoa(lim+5))
		}
		if a.ResetAfter != nil {
			h.Set("X-RateLimit-Reset-After", f3s(*a.ResetAfter))
		} else {
			h.Set("X-RateLimit-Reset-After", "0.001")
		}
	}
}
