package applier

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// fakeClock drives the limiter's clock in unit tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func resp(status int, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

func bucketHeaders(hash string, limit, remaining int, resetAfter float64) []string {
	return []string{"X-RateLimit-Bucket", hash, "X-RateLimit-Limit", strconv.Itoa(limit),
		"X-RateLimit-Remaining", strconv.Itoa(remaining), "X-RateLimit-Reset-After", strconv.FormatFloat(resetAfter, 'f', 3, 64)}
}

func newTestLimiter(maxWait time.Duration) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(1000, time.Second, maxWait)
	l.now = c.now
	return l, c
}

func TestLimiterLearnsBucketsFromHeaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, clock := newTestLimiter(time.Hour)
	put := Route{"PUT role", "g1"}
	del := Route{"DELETE role", "g1"}
	// The first request probes; its answer teaches the bucket (limit 3).
	tk, err := l.Acquire(ctx, put)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(204, bucketHeaders("h1", 3, 2, 10)...))
	for range 2 {
		tk, err := l.Acquire(ctx, put)
		if err != nil {
			t.Fatal(err)
		}
		tk.Observe(resp(204, bucketHeaders("h1", 3, 1, 9)...))
	}
	if d := l.NextFree(put); d < 9*time.Second {
		t.Fatalf("NextFree after using the bucket = %s, want about 9s", d)
	}
	// DELETE learns that it shares the bucket on its first answer.
	tk, err = l.Acquire(ctx, del)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(429, append(bucketHeaders("h1", 3, 0, 9), "Retry-After", "9", "X-RateLimit-Scope", "user")...))
	if d := l.NextFree(del); d < 8*time.Second {
		t.Errorf("NextFree of the shared bucket = %s, want about 9s", d)
	}
	clock.t = clock.t.Add(10*time.Second + resetRounding)
	if d := l.NextFree(put); d != 0 {
		t.Errorf("NextFree after the reset = %s, want 0", d)
	}
	if s := l.Stats(); s.RateLimited != 1 {
		t.Errorf("stats = %+v, want one 429", s)
	}
}

func TestLimiterDefersLongWaitsInsteadOfSleeping(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(100 * time.Millisecond)
	r := Route{"PATCH member", "g1"}
	tk, err := l.Acquire(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(200, bucketHeaders("h2", 1, 0, 5)...))
	_, err = l.Acquire(context.Background(), r)
	var we *WaitError
	if !errors.As(err, &we) || we.Delay < 4*time.Second {
		t.Fatalf("Acquire on an empty bucket = %v, want a WaitError of about 5s", err)
	}
}

func TestLimiterWaitRespectsContext(t *testing.T) {
	t.Parallel()
	l := NewLimiter(1000, time.Second, time.Hour)
	r := Route{"PATCH member", "g1"}
	tk, err := l.Acquire(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(200, bucketHeaders("h3", 1, 0, 60)...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want the context's deadline", err)
	}
}

func TestLimiterGlobalLimitAndReplicaShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		share  int
		wantOK int
	}{
		{name: "one replica may send the whole global limit", share: 1, wantOK: 10},
		{name: "two replicas get half each", share: 2, wantOK: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			l := NewLimiter(10, time.Second, time.Millisecond)
			l.now = c.now
			l.SetShare(tc.share)
			ok := 0
			for range 20 {
				tk, err := l.Acquire(context.Background(), Route{"GET /users/@me", ""})
				if err != nil {
					continue
				}
				ok++
				tk.Observe(resp(200))
			}
			if ok != tc.wantOK {
				t.Errorf("%d requests passed within one window, want %d", ok, tc.wantOK)
			}
		})
	}
}

func TestLimiterStopsEverythingOnACloudflareBan(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(time.Second)
	tk, err := l.Acquire(context.Background(), Route{"GET member", "g"})
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(429, "Content-Type", "text/html"))
	_, err = l.Acquire(context.Background(), Route{"PUT role", "g"})
	var we *WaitError
	if !errors.As(err, &we) || we.Delay < 30*time.Second {
		t.Fatalf("Acquire after a ban = %v, want a long WaitError", err)
	}
}

func FuzzLimiterObserveHeaders(f *testing.F) {
	f.Add(204, "h", "10", "9", "1.5", "", "")
	f.Add(429, "h", "abc", "-1", "NaN", "1e309", "global")
	f.Add(429, "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, status int, hash, limit, remaining, resetAfter, retry, scope string) {
		l, _ := newTestLimiter(time.Millisecond)
		r := Route{"PUT role", "g"}
		tk, err := l.Acquire(context.Background(), r)
		if err != nil {
			return
		}
		tk.Observe(resp(status, "X-RateLimit-Bucket", hash, "X-RateLimit-Limit", limit, "X-RateLimit-Remaining", remaining,
			"X-RateLimit-Reset-After", resetAfter, "Retry-After", retry, "X-RateLimit-Scope", scope))
		_ = l.NextFree(r)
		if tk, err := l.Acquire(context.Background(), r); err == nil {
			tk.Cancel()
		}
	})
}

// A bucket learned from headers must not stall when later answers carry no
// rate-limit headers (a proxy that strips them, an emulator profile without
// limits): the reset it waits for would never come.
func TestLimiterKeepsGoingWhenRateLimitHeadersDisappear(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(50 * time.Millisecond)
	r := Route{"GET member", "g1"}
	tk, err := l.Acquire(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(200, bucketHeaders("h1", 2, 1, 1)...)) // learned: 2 per second
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tk, err := l.Acquire(ctx, r)
		cancel()
		if err != nil {
			t.Fatalf("request %d after the headers disappeared: %v", i, err)
		}
		tk.Observe(resp(200)) // no headers
		clock.t = clock.t.Add(time.Second + resetRounding)
	}
}

func TestLimiterTakesOnlyItsShareOfABucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		// learnShare is the number of replicas when the bucket is learned,
		// laterShare the number when the next answer comes.
		learnShare, laterShare int
		want                   int // requests that may start at once after the probe
	}{
		{name: "one replica uses what the bucket has left", learnShare: 1, laterShare: 1, want: 9},
		{name: "two replicas: half the bucket, less the probe", learnShare: 2, laterShare: 2, want: 4},
		{name: "a replica joining mid-window shrinks the share", learnShare: 1, laterShare: 2, want: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, _ := newTestLimiter(time.Hour)
			l.SetShare(tc.learnShare)
			r := Route{"PUT role", "g1"}
			tk, err := l.Acquire(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			tk.Observe(resp(204, bucketHeaders("h1", 10, 9, 10)...))
			var held []*Ticket
			if tc.laterShare != tc.learnShare {
				l.SetShare(tc.laterShare)
				tk, err := l.Acquire(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				tk.Observe(resp(204, bucketHeaders("h1", 10, 8, 10)...))
				held = append(held, nil) // that request counts
			}
			for l.NextFree(r) == 0 && len(held) < 20 {
				tk, err := l.Acquire(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, tk)
			}
			if len(held) != tc.want {
				t.Errorf("%d requests may start in the window, want %d", len(held), tc.want)
			}
		})
	}
}

// X-RateLimit-Reset-After has millisecond precision and is rounded: "0.010"
// may stand for 10.4 ms. The bucket is not free again before the latest
// reset the header allows, so a request never lands in the old window.
func TestLimiterAllowsForTheRoundingOfResetAfter(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(time.Hour)
	r := Route{"GET member", "g1"}
	tk, err := l.Acquire(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(200, bucketHeaders("h9", 1, 0, 0.010)...))
	clock.t = clock.t.Add(10 * time.Millisecond)
	if d := l.NextFree(r); d <= 0 {
		t.Fatalf("NextFree at the stated reset = %s, want > 0: the true reset may be up to 0.5 ms later", d)
	}
	clock.t = clock.t.Add(resetRounding)
	if d := l.NextFree(r); d != 0 {
		t.Fatalf("NextFree once the latest possible reset passed = %s, want 0", d)
	}
}

// Units a replica had left at the end of a window belong to that window,
// and perhaps to an older share: a replica that probed a bucket alone (its
// start-up preflight) and then saw a second replica must take only its half
// of the next window, not the rest of the old one.
func TestLimiterTakesItsCurrentShareOfEachNewWindow(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(time.Hour)
	r := Route{"GET member", "g1"}
	tk, err := l.Acquire(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	tk.Observe(resp(200, bucketHeaders("h7", 5, 4, 1)...)) // alone: 4 units left
	l.SetShare(2)
	clock.t = clock.t.Add(2 * time.Second) // the window is over
	got := 0
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := l.Acquire(ctx, r)
		cancel()
		if err != nil {
			break
		}
		got++
	}
	if got != 2 {
		t.Fatalf("%d requests in the new window, want 2 (half of the bucket's 5 with two replicas)", got)
	}
}

// When a second replica appears, this one's half of the global budget is
// measured against every send of the current window, wherever the larger
// ring had recorded them.
func TestLimiterCountsTheWindowsSendsWhenTheShareGrows(t *testing.T) {
	t.Parallel()
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(300, 50*time.Millisecond, time.Hour) // 15 per 50 ms
	l.now = c.now
	send := func(n int) {
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			tk, err := l.Acquire(ctx, Route{"GET /users/@me", ""})
			cancel()
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			tk.Observe(nil)
		}
	}
	send(15)
	c.t = c.t.Add(time.Second)
	send(7) // ring slots 0–6
	c.t = c.t.Add(time.Second)
	send(8)       // slots 7–14: this window's sends
	l.SetShare(2) // this replica may now send 7 per window: it already sent 8
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, Route{"GET /users/@me", ""}); err == nil {
		t.Fatal("a 9th send in the window was allowed after the share grew to 2 (limit 7 per replica)")
	}
	c.t = c.t.Add(60 * time.Millisecond) // the window has passed
	send(7)
}
