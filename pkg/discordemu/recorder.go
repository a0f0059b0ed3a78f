package discordemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Record is one recorded API request (§10).
type Record struct {
	Seq               int64               `json:"seq"`
	ReceivedAt        time.Time           `json:"received_at"`
	DurationMS        float64             `json:"duration_ms"`
	ClientIP          string              `json:"client_ip"`
	ConnID            int64               `json:"conn_id"`
	Method            string              `json:"method"`
	Path              string              `json:"path"`
	APIVersion        string              `json:"api_version"`
	Query             map[string][]string `json:"query"`
	Route             string              `json:"route"`
	Params            map[string]string   `json:"params"`
	Auth              RecordAuth          `json:"auth"`
	UserAgent         string              `json:"user_agent"`
	ContentType       string              `json:"content_type"`
	BodyRaw           string              `json:"body_raw"`
	BodyJSON          json.RawMessage     `json:"body_json"`
	AuditReasonRaw    *string             `json:"audit_reason_raw"`
	AuditReason       *string             `json:"audit_reason"`
	Flags             []string            `json:"flags"`
	Bucket            *RecordBucket       `json:"bucket"`
	GlobalWindowCount int                 `json:"global_window_count"`
	Identity          string              `json:"identity"`
	Outcome           Outcome             `json:"outcome"`
	ResponseHeaders   map[string]string   `json:"response_headers"`
	ResponseBody      string              `json:"response_body"`
}

// RecordAuth describes the request's identity; the token value is never stored.
type RecordAuth struct {
	Kind          string `json:"kind"` // bot, bearer, none, invalid
	ApplicationID string `json:"application_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
}

// RecordBucket is the per-route bucket state after the request.
type RecordBucket struct {
	Name           string  `json:"name"`
	Major          string  `json:"major"`
	Limit          int     `json:"limit"`
	RemainingAfter int     `json:"remaining_after"`
	ResetAfter     float64 `json:"reset_after"`
}

// Outcome is the result of a request.
type Outcome struct {
	Status         int     `json:"status"`
	Code           *int    `json:"code"`
	Scope          *string `json:"scope"`
	RateLimited    bool    `json:"rate_limited"`
	Global         bool    `json:"global"`
	InvalidCounted bool    `json:"invalid_counted"`
	Fault          *string `json:"fault"`
	Committed      bool    `json:"committed"`
	Banned         bool    `json:"banned,omitempty"`
	// Dropped is true when the connection was closed by a drop fault (no
	// response; Status is then 0) or by stall_body with then=drop (the status
	// line went out, the body was cut short; Status is what was sent).
	Dropped bool `json:"dropped,omitempty"`
	// DroppedStatus is the status the request would have had when a drop fault
	// at after_commit replaced its response (0 at stage before).
	DroppedStatus int `json:"dropped_status,omitempty"`
}

// Record flags.
const (
	FlagReasonNotEncoded  = "reason_not_encoded"
	FlagLegacyReasonQuery = "legacy_reason_query"
	FlagMissingUserAgent  = "missing_user_agent"
)

func (r *Record) hasFlag(f string) bool {
	for _, x := range r.Flags {
		if x == f {
			return true
		}
	}
	return false
}

// RequestFilter selects records. Zero fields match everything.
type RequestFilter struct {
	Route   string `json:"route,omitempty"`
	Method  string `json:"method,omitempty"`
	GuildID string `json:"guild_id,omitempty"`
	UserID  string `json:"user_id,omitempty"`
	Status  int    `json:"status,omitempty"`
	// SinceSeq keeps records numbered SinceSeq or later: pass NextSeq()
	// (or an answer's next_seq) to get what came after it.
	SinceSeq int64 `json:"since_seq,omitempty"`
	Limit    int   `json:"limit,omitempty"`
}

func (f RequestFilter) match(r *Record) bool {
	return (f.Route == "" || f.Route == r.Route) &&
		(f.Method == "" || f.Method == r.Method) &&
		(f.GuildID == "" || f.GuildID == r.Params["guild_id"]) &&
		(f.UserID == "" || f.UserID == r.Params["user_id"]) &&
		(f.Status == 0 || f.Status == r.Outcome.Status) &&
		r.Seq >= f.SinceSeq
}

func (f RequestFilter) query() string {
	q := url.Values{}
	add := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	add("route", f.Route)
	add("method", f.Method)
	add("guild_id", f.GuildID)
	add("user_id", f.UserID)
	if f.Status != 0 {
		add("status", strconv.Itoa(f.Status))
	}
	if f.SinceSeq != 0 {
		add("since_seq", strconv.FormatInt(f.SinceSeq, 10))
	}
	if f.Limit != 0 {
		add("limit", strconv.Itoa(f.Limit))
	}
	return q.Encode()
}

// Recorder stores every API request in arrival order (§10).
type Recorder struct {
	mu      sync.Mutex
	seq     int64
	recs    []*Record
	changed chan struct{}
	scale   func() float64
	lim     *limiter
}

func newRecorder(scale func() float64, lim *limiter) *Recorder {
	return &Recorder{changed: make(chan struct{}), scale: scale, lim: lim}
}

func (r *Recorder) nextSeq() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return r.seq
}

func (r *Recorder) add(rec *Record) {
	redactRecord(rec)
	r.mu.Lock()
	defer r.mu.Unlock()
	// keep arrival order by seq
	i := sort.Search(len(r.recs), func(i int) bool { return r.recs[i].Seq > rec.Seq })
	r.recs = append(r.recs, nil)
	copy(r.recs[i+1:], r.recs[i:])
	r.recs[i] = rec
	close(r.changed)
	r.changed = make(chan struct{})
}

// Clear removes every record.
func (r *Recorder) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = nil
	close(r.changed)
	r.changed = make(chan struct{})
}

// Requests returns copies of the matching records in arrival order.
func (r *Recorder) Requests(f RequestFilter) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.matchLocked(f)
}

func (r *Recorder) matchLocked(f RequestFilter) []Record {
	var out []Record
	for _, x := range r.recs {
		if f.match(x) {
			out = append(out, *x)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
	}
	return out
}

// NextSeq returns the sequence number the next record will be at least: as
// RequestFilter.SinceSeq it selects the requests from now on.
func (r *Recorder) NextSeq() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq + 1
}

// Calls counts the recorded requests of a route id.
func (r *Recorder) Calls(route string) int {
	return len(r.Requests(RequestFilter{Route: route}))
}

// Wait blocks until at least n records match f, or ctx ends.
func (r *Recorder) Wait(ctx context.Context, f RequestFilter, n int) ([]Record, error) {
	for {
		r.mu.Lock()
		lim := f.Limit
		f.Limit = 0
		got := r.matchLocked(f)
		f.Limit = lim
		ch := r.changed
		r.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for %d requests matching %+v (have %d): %w", n, f, len(got), ctx.Err())
		case <-ch:
		}
	}
}

// IdentityMetrics are the per-identity metrics of §10.
type IdentityMetrics struct {
	Requests          int            `json:"requests"`
	MaxPerSecond      int            `json:"max_per_second"`
	MaxPerScaledSec   int            `json:"max_per_scaled_second"`
	RateLimitsByScope map[string]int `json:"rate_limits_by_scope"`
	Invalid           int            `json:"invalid"`
	BanEvents         int            `json:"ban_events"`
}

// BucketMetrics are the per-bucket metrics of §10.
type BucketMetrics struct {
	Requests      int `json:"requests"`
	MaxInFlight   int `json:"max_in_flight"`
	ArrivedAtZero int `json:"arrived_at_zero"`
	RateLimited   int `json:"rate_limited"`
}

// Metrics is the GET /_emu/metrics answer.
type Metrics struct {
	Identities map[string]*IdentityMetrics `json:"identities"`
	Buckets    map[string]*BucketMetrics   `json:"buckets"`
}

// Metrics computes the recorder metrics.
func (r *Recorder) Metrics() Metrics {
	recs := r.Requests(RequestFilter{})
	m := Metrics{Identities: map[string]*IdentityMetrics{}, Buckets: map[string]*BucketMetrics{}}
	times := map[string][]time.Time{}
	for i := range recs {
		x := &recs[i]
		id := x.Identity
		if id == "" {
			id = "ip:" + x.ClientIP
		}
		im := m.Identities[id]
		if im == nil {
			im = &IdentityMetrics{RateLimitsByScope: map[string]int{}}
			m.Identities[id] = im
		}
		im.Requests++
		times[id] = append(times[id], x.ReceivedAt)
		if x.Outcome.RateLimited && x.Outcome.Scope != nil {
			im.RateLimitsByScope[*x.Outcome.Scope]++
		}
		if x.Outcome.InvalidCounted {
			im.Invalid++
		}
		if x.Bucket != nil {
			key := id + "|" + x.Bucket.Name + "|" + x.Bucket.Major
			bm := m.Buckets[key]
			if bm == nil {
				bm = &BucketMetrics{}
				m.Buckets[key] = bm
			}
			bm.Requests++
			if x.Outcome.RateLimited {
				bm.RateLimited++
			}
		}
	}
	sc := r.scale()
	for id, ts := range times {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		m.Identities[id].MaxPerSecond = maxInWindow(ts, time.Second)
		m.Identities[id].MaxPerScaledSec = maxInWindow(ts, secs(sc))
	}
	if r.lim != nil {
		r.lim.mu.Lock()
		for key, b := range r.lim.buckets {
			bm := m.Buckets[key]
			if bm == nil {
				bm = &BucketMetrics{}
				m.Buckets[key] = bm
			}
			bm.MaxInFlight = b.MaxInFlight
			bm.ArrivedAtZero = b.AtZero
		}
		for ip, n := range r.lim.banCount {
			id := "ip:" + ip
			im := m.Identities[id]
			if im == nil {
				im = &IdentityMetrics{RateLimitsByScope: map[string]int{}}
				m.Identities[id] = im
			}
			im.BanEvents += n
		}
		r.lim.mu.Unlock()
	}
	return m
}

func maxInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		if n := i - j + 1; n > best {
			best = n
		}
	}
	return best
}

// TB is the subset of testing.TB the assertion helpers use.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// AssertNoRateLimits fails t if any recorded request got a 429 of any scope.
func (r *Recorder) AssertNoRateLimits(t TB) {
	t.Helper()
	for _, x := range r.Requests(RequestFilter{}) {
		if x.Outcome.Status == 429 {
			t.Errorf("discordemu: request #%d %s %s was rate limited (route %s)", x.Seq, x.Method, x.Path, x.Route)
		}
	}
}

// AssertMaxGlobalRate fails t if any identity sent more than perSec requests in
// any scaled one-second window.
func (r *Recorder) AssertMaxGlobalRate(t TB, perSec int) {
	t.Helper()
	for id, im := range r.Metrics().Identities {
		if im.MaxPerScaledSec > perSec {
			t.Errorf("discordemu: identity %s sent %d requests in one (scaled) second, max %d", id, im.MaxPerScaledSec, perSec)
		}
	}
}

// AssertNoInvalidRequests fails t if any response counted as invalid (§8.6).
func (r *Recorder) AssertNoInvalidRequests(t TB) {
	t.Helper()
	for _, x := range r.Requests(RequestFilter{}) {
		if x.Outcome.InvalidCounted {
			t.Errorf("discordemu: request #%d %s %s was an invalid request (status %d)", x.Seq, x.Method, x.Path, x.Outcome.Status)
		}
	}
}

// AssertAllReasonsEncoded fails t if a request sent an audit reason that was not
// percent-encoded, or used the legacy ?reason= query.
func (r *Recorder) AssertAllReasonsEncoded(t TB) {
	t.Helper()
	for _, x := range r.Requests(RequestFilter{}) {
		if x.hasFlag(FlagReasonNotEncoded) || x.hasFlag(FlagLegacyReasonQuery) {
			t.Errorf("discordemu: request #%d %s %s has flags %v", x.Seq, x.Method, x.Path, x.Flags)
		}
	}
}
