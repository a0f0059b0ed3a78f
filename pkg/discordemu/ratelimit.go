package discordemu

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// BucketDef is one row of the rate-limit table (§8.3).
type BucketDef struct {
	Name          string   `json:"name"`
	Routes        []string `json:"routes"`
	Limit         int      `json:"limit"`
	WindowSeconds float64  `json:"window_seconds"`
	// Major is "guild" (keyed per guild_id) or "" (one bucket per bot).
	Major string `json:"major"`
	// Algorithm is "fixed" or "sliding".
	Algorithm string `json:"algorithm"`
}

// RateLimitTable is the whole per-route rate-limit table.
type RateLimitTable struct {
	Buckets []BucketDef `json:"buckets"`
}

// RealisticTable returns the realistic profile's table (§8.3).
func RealisticTable() RateLimitTable {
	return RateLimitTable{Buckets: []BucketDef{
		{Name: "member_role", Routes: []string{"member_role_add", "member_role_remove"}, Limit: 10, WindowSeconds: 10, Major: "guild", Algorithm: "fixed"},
		{Name: "member_edit", Routes: []string{"member_edit"}, Limit: 10, WindowSeconds: 10, Major: "guild", Algorithm: "sliding"},
		{Name: "member_add", Routes: []string{"member_add"}, Limit: 10, WindowSeconds: 10, Major: "guild", Algorithm: "sliding"},
		{Name: "member_get", Routes: []string{"member_get"}, Limit: 5, WindowSeconds: 1, Major: "guild", Algorithm: "sliding"},
		{Name: "member_kick", Routes: []string{"member_kick"}, Limit: 5, WindowSeconds: 1, Major: "guild", Algorithm: "sliding"},
		{Name: "members_list", Routes: []string{"members_list"}, Limit: 10, WindowSeconds: 10, Major: "guild", Algorithm: "sliding"},
		{Name: "role_create", Routes: []string{"role_create"}, Limit: 250, WindowSeconds: 172800, Major: "guild", Algorithm: "sliding"},
		{Name: "role_edit", Routes: []string{"role_edit"}, Limit: 1000, WindowSeconds: 86400, Major: "guild", Algorithm: "sliding"},
		{Name: "bans_list", Routes: []string{"bans_list"}, Limit: 10, WindowSeconds: 10, Major: "guild", Algorithm: "sliding"},
		{Name: "ban_write", Routes: []string{"ban_create", "ban_delete", "ban_get"}, Limit: 1000, WindowSeconds: 1, Major: "", Algorithm: "sliding"},
	}}
}

// BucketHash is the stable X-RateLimit-Bucket value of a bucket name (§8.1).
func BucketHash(name string) string {
	s := sha256.Sum256([]byte("discordemu:" + name))
	return hex.EncodeToString(s[:])[:32]
}

type bucketState struct {
	Name        string    `json:"name"`
	Major       string    `json:"major"`
	Identity    string    `json:"identity"`
	WindowStart time.Time `json:"window_start"`
	Used        int       `json:"used"`
	Tokens      float64   `json:"tokens"`
	Last        time.Time `json:"last"`
	init        bool
	inFlight    int
	MaxInFlight int `json:"max_in_flight"`
	AtZero      int `json:"arrived_at_zero"`
}

type globalWindow struct {
	idx   int64
	count int
}

type ipBan struct {
	Until  time.Time `json:"until"`
	Format string    `json:"format"`
}

type limiter struct {
	mu       sync.Mutex
	table    RateLimitTable
	byRoute  map[string]BucketDef
	buckets  map[string]*bucketState
	global   map[string]*globalWindow
	invalid  map[string][]time.Time
	bans     map[string]ipBan
	banCount map[string]int
}

func newLimiter() *limiter {
	l := &limiter{}
	l.reset()
	l.setTable(RealisticTable())
	return l
}

func (l *limiter) reset() {
	l.buckets = map[string]*bucketState{}
	l.global = map[string]*globalWindow{}
	l.invalid = map[string][]time.Time{}
	l.bans = map[string]ipBan{}
	l.banCount = map[string]int{}
}

func (l *limiter) setTable(t RateLimitTable) {
	l.table = t
	l.byRoute = map[string]BucketDef{}
	for _, b := range t.Buckets {
		for _, r := range b.Routes {
			l.byRoute[r] = b
		}
	}
}

// rlResult is the outcome of consuming a unit of a per-route bucket.
type rlResult struct {
	def        BucketDef
	major      string
	allowed    bool
	limit      int
	remaining  int
	resetAfter float64 // real seconds
	reset      time.Time
	retryAfter float64
	key        string
}

func (r *rlResult) headers(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(r.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(r.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatFloat(float64(r.reset.UnixNano())/1e9, 'f', 3, 64))
	h.Set("X-RateLimit-Reset-After", f3s(r.resetAfter))
	h.Set("X-RateLimit-Bucket", BucketHash(r.def.Name))
}

func f3s(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

// consume takes one unit of the route's bucket. It returns nil when the route has
// no bucket.
func (l *limiter) consume(identity, route string, params map[string]string, now time.Time, scale float64, algo string) *rlResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	def, ok := l.byRoute[route]
	if !ok || def.Limit <= 0 {
		return nil
	}
	major := ""
	if def.Major == "guild" {
		major = params["guild_id"]
	}
	key := identity + "|" + def.Name + "|" + major
	b := l.buckets[key]
	if b == nil {
		b = &bucketState{Name: def.Name, Major: major, Identity: identity}
		l.buckets[key] = b
	}
	res := step(b, def, now, scale, algo)
	res.major, res.key = major, key
	if !res.allowed {
		return res
	}
	b.inFlight++
	if b.inFlight > b.MaxInFlight {
		b.MaxInFlight = b.inFlight
	}
	return res
}

// done marks the end of an allowed request for in-flight accounting.
func (l *limiter) done(r *rlResult) {
	if r == nil || !r.allowed {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[r.key]; b != nil && b.inFlight > 0 {
		b.inFlight--
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// globalCheck counts a request against the identity's fixed, clock-aligned global
// window. It returns (allowed, retryAfter, countInWindow).
func (l *limiter) globalCheck(identity string, now time.Time, limit int, scale float64) (bool, float64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	win := int64(float64(time.Second) * scale)
	if win <= 0 {
		win = 1
	}
	idx := now.UnixNano() / win
	g := l.global[identity]
	if g == nil {
		g = &globalWindow{}
		l.global[identity] = g
	}
	if g.idx != idx {
		g.idx, g.count = idx, 0
	}
	end := time.Unix(0, (idx+1)*win)
	if g.count >= limit {
		return false, end.Sub(now).Seconds(), g.count
	}
	g.count++
	return true, 0, g.count
}

// countInvalid records an invalid response for ip; it returns true when this
// response started a ban.
func (l *limiter) countInvalid(ip string, now time.Time, cfg *Config) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	win := secs(600 * cfg.scale())
	xs := l.invalid[ip]
	cut := 0
	for cut < len(xs) && now.Sub(xs[cut]) > win {
		cut++
	}
	xs = append(xs[cut:], now)
	l.invalid[ip] = xs
	if len(xs) >= cfg.InvalidRequestLimit {
		if b, ok := l.bans[ip]; !ok || !now.Before(b.Until) {
			l.bans[ip] = ipBan{Until: now.Add(secs(cfg.CloudflareBanSeconds * cfg.scale())), Format: cfg.CloudflareBanFormat}
			l.banCount[ip]++
			l.invalid[ip] = nil
			return true
		}
	}
	return false
}

func (l *limiter) banned(ip string, now time.Time) (ipBan, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.bans[ip]
	if !ok || !now.Before(b.Until) {
		return ipBan{}, false
	}
	return b, true
}

func (l *limiter) ban(ip string, until time.Time, format string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bans[ip] = ipBan{Until: until, Format: format}
	l.banCount[ip]++
}

func (l *limiter) unban(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip == "" {
		l.bans = map[string]ipBan{}
		return
	}
	delete(l.bans, ip)
}

func (l *limiter) invalidCounts(now time.Time, cfg *Config) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	win := secs(600 * cfg.scale())
	out := map[string]int{}
	for ip, xs := range l.invalid {
		n := 0
		for _, t := range xs {
			if now.Sub(t) <= win {
				n++
			}
		}
		out[ip] = n
	}
	return out
}

// step applies one request to bucket b and returns the result.
func step(b *bucketState, def BucketDef, now time.Time, scale float64, algo string) *rlResult {
	L := float64(def.Limit)
	T := def.WindowSeconds * scale
	if T <= 0 {
		T = 1e-9
	}
	a := def.Algorithm
	if algo == "fixed" || algo == "sliding" {
		a = algo
	}
	res := &rlResult{def: def, limit: def.Limit}
	if a == "fixed" {
		end := b.WindowStart.Add(secs(T))
		if !b.init || !now.Before(end) {
			b.init, b.WindowStart, b.Used = true, now, 0
			end = now.Add(secs(T))
		}
		res.resetAfter = end.Sub(now).Seconds()
		res.reset = end
		if b.Used >= def.Limit {
			b.AtZero++
			res.remaining = 0
			res.retryAfter = res.resetAfter
			return res
		}
		b.Used++
		res.allowed = true
		res.remaining = def.Limit - b.Used
	} else {
		if !b.init {
			b.init, b.Tokens, b.Last = true, L, now
		}
		el := now.Sub(b.Last).Seconds()
		if el > 0 {
			b.Tokens = math.Min(L, b.Tokens+el*L/T)
			b.Last = now
		}
		if b.Tokens > L {
			b.Tokens = L
		}
		if b.Tokens < 1 {
			b.AtZero++
			res.remaining = 0
			res.retryAfter = (1 - b.Tokens) * T / L
			res.resetAfter = (L - b.Tokens) * T / L
			res.reset = now.Add(secs(res.resetAfter))
			return res
		}
		b.Tokens--
		res.allowed = true
		res.remaining = int(math.Floor(b.Tokens))
		res.resetAfter = (L - b.Tokens) * T / L
		res.reset = now.Add(secs(res.resetAfter))
	}
	return res
}

// peek returns the bucket's current headers without consuming.
func (l *limiter) peek(identity, route string, params map[string]string, now time.Time, scale float64, algo string) *rlResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	def, ok := l.byRoute[route]
	if !ok || def.Limit <= 0 {
		return nil
	}
	major := ""
	if def.Major == "guild" {
		major = params["guild_id"]
	}
	var cp bucketState
	if b := l.buckets[identity+"|"+def.Name+"|"+major]; b != nil {
		cp = *b
	}
	res := step(&cp, def, now, scale, algo)
	if res.allowed {
		res.remaining++
	}
	res.major = major
	return res
}
