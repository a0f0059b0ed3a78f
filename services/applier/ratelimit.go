package applier

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Route names one kind of Discord call and its major parameter (the guild id
// for guild routes). Buckets are not hard-coded: the limiter learns which
// routes share a bucket, and each bucket's size and reset, from the
// X-RateLimit-* headers of the responses.
type Route struct {
	// Name is the route template, such as "PATCH /guilds/{g}/members/{u}".
	Name string
	// Major is the major parameter (guild id) or "".
	Major string
}

// WaitError says that a call could not start within the limiter's maximum
// wait: the caller should delay the message by Delay instead of sleeping.
type WaitError struct {
	Route Route
	Delay time.Duration
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("rate limit: %s (%s) busy for %s", e.Route.Name, e.Route.Major, e.Delay.Round(time.Millisecond))
}

// limitBucket is what the limiter knows about one Discord bucket.
type limitBucket struct {
	known     bool          // limit and reset learned from headers
	limit     int           // X-RateLimit-Limit
	remaining int           // units we may still use before resetAt
	resetAt   time.Time     // when the bucket is full again (local clock)
	pending   bool          // refilled locally; resetAt unknown until a response of this epoch
	epoch     uint64        // incremented on every local refill
	probing   bool          // one request is in flight to learn an unknown bucket
	inflight  int           // tickets not yet observed
	used      int           // tickets handed out in this epoch (this replica's use of its share)
	window    time.Duration // the last reset-after seen when the bucket ran empty
	changed   chan struct{}
}

func newLimitBucket() *limitBucket { return &limitBucket{changed: make(chan struct{})} }

func (b *limitBucket) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Limiter is the applier's own Discord rate limiter: a global limit of N
// requests per window (a sliding log, so no fixed, clock-aligned window on
// Discord's side can see more than N) plus the per-route buckets learned from
// response headers. Waits respect ctx; a wait longer than MaxWait returns a
// *WaitError so that the message is delayed rather than a goroutine asleep.
type Limiter struct {
	mu      sync.Mutex
	now     func() time.Time
	maxWait time.Duration

	globalN      int
	globalWindow time.Duration
	sent         []time.Time // ring of the last globalN send times
	next         int
	globalUntil  time.Time // set by a global 429

	share int // live replicas sharing the bot's limits (each uses 1/share)

	routeBucket map[string]string // route name → X-RateLimit-Bucket hash
	buckets     map[string]*limitBucket

	stats LimiterStats
}

// LimiterStats counts what the limiter saw.
type LimiterStats struct {
	Requests     int64
	RateLimited  int64 // 429 responses
	GlobalLimits int64 // 429 with global scope
	Waits        int64 // acquisitions that had to wait
	Deferred     int64 // acquisitions refused with a WaitError
}

// NewLimiter returns a limiter of rps requests per second measured over
// window (1s for Discord; a time-scaled emulator scales the window).
func NewLimiter(rps float64, window, maxWait time.Duration) *Limiter {
	n := int(rps * window.Seconds())
	if n < 1 {
		n = 1
	}
	return &Limiter{
		now:          time.Now,
		maxWait:      maxWait,
		globalN:      n,
		globalWindow: window + window/20, // margin for network jitter
		sent:         make([]time.Time, n),
		share:        1,
		routeBucket:  map[string]string{},
		buckets:      map[string]*limitBucket{},
	}
}

// Stats returns a copy of the counters.
func (l *Limiter) Stats() LimiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

func (l *Limiter) bucketKey(r Route) string {
	if h, ok := l.routeBucket[r.Name]; ok {
		return h + "|" + r.Major
	}
	return "route:" + r.Name + "|" + r.Major
}

func (l *Limiter) bucket(r Route) *limitBucket {
	k := l.bucketKey(r)
	b := l.buckets[k]
	if b == nil {
		b = newLimitBucket()
		l.buckets[k] = b
	}
	return b
}

// Ticket is one permission to send a request. It is passed to the transport
// through the request context and closed by Observe (or Cancel).
type Ticket struct {
	l       *Limiter
	route   Route
	b       *limitBucket
	epoch   uint64
	probing bool
	done    bool
	// waited is how long Acquire took (a span attribute of the call).
	waited time.Duration
}

// SetShare sets the number of replicas sharing the bot's limits (n <= 0
// keeps the current value) and returns the previous one.
func (l *Limiter) SetShare(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.share
	if n > 0 && n != old {
		l.share = n
		l.compactRingLocked()
	}
	return old
}

// compactRingLocked re-lays the global send log for the current share: the
// newest sends (as many as the share's ring holds) at its start, oldest
// first, so that a smaller ring still counts the sends of the current window
// wherever the larger one had put them.
func (l *Limiter) compactRingLocked() {
	ts := make([]time.Time, 0, len(l.sent))
	for _, t := range l.sent {
		if !t.IsZero() {
			ts = append(ts, t)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	k := l.perShare(len(l.sent))
	if len(ts) > k {
		ts = ts[len(ts)-k:]
	}
	clear(l.sent)
	copy(l.sent, ts)
	l.next = len(ts) % k
}

// perShare is a limit divided among the replicas (at least 1).
func (l *Limiter) perShare(limit int) int { return max(limit/l.share, 1) }

// NextFree estimates how long until route could start a request.
func (l *Limiter) NextFree(r Route) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(r)
	now := l.now()
	switch {
	case !b.known || b.remaining > 0:
		return 0
	case b.pending || (b.inflight > 0 && !now.Before(b.resetAt)):
		// The answers of the burst in flight will set the reset; expect
		// what an empty bucket took last time.
		return max(b.window, time.Millisecond)
	case !now.Before(b.resetAt):
		return 0
	}
	return b.resetAt.Sub(now)
}

// Acquire waits until route may send one request, then reserves it.
func (l *Limiter) Acquire(ctx context.Context, r Route) (*Ticket, error) {
	waited := false
	for {
		l.mu.Lock()
		now := l.now()
		b := l.bucket(r)
		// Refill only once every answer of the last burst is in: the last
		// one carries the bucket's real reset (for a token bucket, the time
		// until it is full again after all of our requests). A window that
		// ended with units left is refilled too: what was left was this
		// replica's view of an old window, perhaps under an older share (a
		// preflight probe before the other replicas were seen).
		if b.known && !b.pending && b.inflight == 0 && !now.Before(b.resetAt) && b.remaining != l.perShare(b.limit) {
			b.remaining = l.perShare(b.limit)
			b.used = 0
			b.epoch++
			b.pending = true
		}
		var wait time.Duration
		var ch <-chan struct{}
		switch {
		case !b.known && !b.probing:
			b.probing = true
			b.inflight++
			b.used++
			t := &Ticket{l: l, route: r, b: b, epoch: b.epoch, probing: true}
			if err := l.globalLocked(ctx, now, waited, t); err != nil {
				return nil, err
			}
			return t, nil
		case !b.known || (b.remaining <= 0 && (b.pending || (b.inflight > 0 && !now.Before(b.resetAt)))):
			// Wait for the response that teaches us the bucket.
			ch, wait = b.changed, l.maxWait
		case b.remaining > 0:
			b.remaining--
			b.used++
			b.inflight++
			t := &Ticket{l: l, route: r, b: b, epoch: b.epoch}
			if err := l.globalLocked(ctx, now, waited, t); err != nil {
				return nil, err
			}
			return t, nil
		default:
			wait = b.resetAt.Sub(now)
			if wait > l.maxWait {
				l.stats.Deferred++
				l.mu.Unlock()
				return nil, &WaitError{Route: r, Delay: wait}
			}
		}
		l.stats.Waits++
		l.mu.Unlock()
		waited = true
		if err := sleepCtx(ctx, wait, ch); err != nil {
			return nil, err
		}
		if ch != nil && wait == l.maxWait {
			// Re-check; a missing answer (timeout) falls through to the loop,
			// which lets another probe start if the first one died.
			l.mu.Lock()
			if b.probing && !b.known {
				select {
				case <-ch:
				default:
					b.probing = false
				}
			}
			l.mu.Unlock()
		}
	}
}

// globalLocked reserves a global slot for t; it is called with l.mu held and
// returns with it released. On failure the bucket unit is given back.
func (l *Limiter) globalLocked(ctx context.Context, now time.Time, waited bool, t *Ticket) error {
	for {
		wait := time.Duration(0)
		if now.Before(l.globalUntil) {
			wait = l.globalUntil.Sub(now)
		}
		ring := l.sent[:l.perShare(len(l.sent))]
		if l.next >= len(ring) {
			l.next = 0
		}
		oldest := ring[l.next]
		if !oldest.IsZero() {
			if w := oldest.Add(l.globalWindow).Sub(now); w > wait {
				wait = w
			}
		}
		if wait <= 0 {
			ring[l.next] = now
			l.next = (l.next + 1) % len(ring)
			l.stats.Requests++
			if waited {
				l.stats.Waits++
			}
			l.mu.Unlock()
			return nil
		}
		if wait > l.maxWait {
			l.stats.Deferred++
			l.mu.Unlock()
			t.Cancel()
			return &WaitError{Route: t.route, Delay: wait}
		}
		l.mu.Unlock()
		waited = true
		if err := sleepCtx(ctx, wait, nil); err != nil {
			t.Cancel()
			return err
		}
		l.mu.Lock()
		now = l.now()
	}
}

func sleepCtx(ctx context.Context, d time.Duration, ch <-chan struct{}) error {
	if d <= 0 {
		d = time.Millisecond
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
	case <-ch:
	}
	return nil
}

// Cancel gives back a ticket whose request was never sent.
func (t *Ticket) Cancel() {
	if t == nil {
		return
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	t.b.inflight--
	if t.b.epoch == t.epoch {
		t.b.used--
	}
	if t.probing {
		t.b.probing = false
		t.b.notify()
		return
	}
	if t.b.epoch == t.epoch {
		t.b.remaining++
	}
	t.b.notify()
}

// Observe updates the limiter from a response (nil on a transport error).
func (t *Ticket) Observe(resp *http.Response) {
	if t == nil {
		return
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	now := l.now()
	b := t.b
	b.inflight--
	defer b.notify()
	if t.probing {
		b.probing = false
		defer b.notify()
	}
	if resp == nil {
		return
	}
	h := resp.Header
	if hash := h.Get("X-RateLimit-Bucket"); hash != "" {
		if l.routeBucket[t.route.Name] != hash {
			l.routeBucket[t.route.Name] = hash
			k := hash + "|" + t.route.Major
			if shared := l.buckets[k]; shared != nil && shared != b {
				b = shared
			} else {
				l.buckets[k] = b
			}
			// Other majors of this route are re-keyed lazily: drop their route-keyed state.
			for key := range l.buckets {
				if strings.HasPrefix(key, "route:"+t.route.Name+"|") && key != "route:"+t.route.Name+"|"+t.route.Major {
					delete(l.buckets, key)
				}
			}
			delete(l.buckets, "route:"+t.route.Name+"|"+t.route.Major)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		l.stats.RateLimited++
		if h.Get("Retry-After") == "" && h.Get("X-RateLimit-Scope") == "" && h.Get("X-RateLimit-Remaining") == "" {
			// No rate-limit headers at all: Cloudflare's ban of this IP. Stop
			// every request for a while instead of hammering (circuit breaker).
			l.stats.GlobalLimits++
			if until := now.Add(cloudflareBackoff); until.After(l.globalUntil) {
				l.globalUntil = until
			}
			return
		}
		retry := retryAfter(resp)
		if h.Get("X-RateLimit-Global") != "" || strings.EqualFold(h.Get("X-RateLimit-Scope"), "global") {
			l.stats.GlobalLimits++
			if until := now.Add(retry); until.After(l.globalUntil) {
				l.globalUntil = until
			}
			return
		}
		if !b.known {
			b.known, b.limit = true, 1
		}
		b.remaining = 0
		b.pending = false
		if until := now.Add(retry); until.After(b.resetAt) {
			b.resetAt = until
		}
		if lim, err := strconv.Atoi(h.Get("X-RateLimit-Limit")); err == nil && lim > 0 {
			b.limit = lim
		}
		b.notify()
		return
	}
	lim, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	rem, err2 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	after, err3 := strconv.ParseFloat(h.Get("X-RateLimit-Reset-After"), 64)
	if err1 != nil || err2 != nil || err3 != nil || lim <= 0 || rem < 0 || !(after >= 0 && after < maxResetAfter) {
		if !b.known && t.probing {
			// A route without a bucket: only the global limit applies.
			b.known, b.limit, b.remaining, b.pending = true, 1<<30, 1<<30, true
		} else if b.known && b.pending && t.epoch == b.epoch {
			// An answer without (valid) rate-limit headers cannot tell the
			// reset: do not wait for one that may never come. The bucket is
			// refilled once the burst's answers are in.
			b.pending = false
			if now.After(b.resetAt) {
				b.resetAt = now
			}
		}
		return
	}
	// Discord states reset-after in milliseconds (three decimals), rounded:
	// the true reset may be up to half a millisecond later than it says.
	resetAt := now.Add(time.Duration(after*float64(time.Second)) + resetRounding)
	if rem == 0 {
		b.window = time.Duration(after * float64(time.Second))
	}
	switch {
	case !b.known:
		// Remaining is the whole bot's: this replica takes its share of
		// the bucket (1/N of the limit), less the probe it just used.
		b.known, b.limit, b.resetAt, b.pending = true, lim, resetAt, false
		b.remaining = max(min(rem, l.perShare(lim)-b.used), 0)
	case t.epoch == b.epoch || t.probing:
		b.limit = lim
		// Never more than what the bucket has left, nor than this
		// replica's share (the number of replicas may have grown).
		b.remaining = max(min(b.remaining, rem, l.perShare(lim)-b.used), 0)
		if b.pending || resetAt.After(b.resetAt) {
			b.resetAt = resetAt
		}
		b.pending = false
	}
	b.notify()
}

// resetRounding is half the precision of X-RateLimit-Reset-After (1 ms):
// added to every reset, so a value rounded down never sends a request into
// the old window.
const resetRounding = 500 * time.Microsecond

// maxResetAfter bounds the header values the limiter believes (seconds; the
// longest Discord bucket, role creation, resets within 48h).
const maxResetAfter = 3 * 24 * 3600

// cloudflareBackoff is how long all requests stop after a 429 without any
// rate-limit header (an IP ban by Cloudflare).
const cloudflareBackoff = time.Minute

// retryAfter reads the wait of a 429 from Retry-After (seconds), or from the
// reset-after header; at least 100ms.
func retryAfter(resp *http.Response) time.Duration {
	d := time.Duration(0)
	if f, err := strconv.ParseFloat(resp.Header.Get("X-RateLimit-Reset-After"), 64); err == nil && f >= 0 && f < maxResetAfter {
		d = time.Duration(f * float64(time.Second))
	}
	if f, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); err == nil && f >= 0 && f < maxResetAfter {
		if r := time.Duration(f * float64(time.Second)); d == 0 || r < d {
			d = r
		}
	}
	return min(max(d, 100*time.Millisecond), time.Hour)
}

// ErrNoTicket means a Discord request was sent without a limiter ticket.
var ErrNoTicket = errors.New("applier: request without rate-limit ticket")
