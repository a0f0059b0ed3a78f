package applier

import (
	"context"
	"sync"
	"time"
)

// Background work — drift repair and the pending_join re-check — runs at
// low priority behind live events: while a live change of a guild is being
// reconciled, no low-priority Discord call of that guild starts (each one
// waits at the gate, and one that got a limiter ticket meanwhile gives it
// back), so the live change's calls go first.
//
// A low-priority reconcile that a live message is waiting for (the same
// member, serialised by the coalescer) is boosted: it passes the gate, so the
// live message is never stuck behind it.

type lowKey struct{}

// lowPriority marks ctx as background work; boost, when not nil, reports
// that a live message waits for this work (it then passes the gate).
func lowPriority(ctx context.Context, boost func() bool) context.Context {
	return context.WithValue(ctx, lowKey{}, &lowMark{boost: boost})
}

type lowMark struct{ boost func() bool }

// isLow reports whether ctx is background work that is not boosted.
func isLow(ctx context.Context) bool {
	m, ok := ctx.Value(lowKey{}).(*lowMark)
	return ok && (m.boost == nil || !m.boost())
}

// markedLow reports whether ctx was marked low priority (boosted or not).
func markedLow(ctx context.Context) bool {
	_, ok := ctx.Value(lowKey{}).(*lowMark)
	return ok
}

// priority counts the live reconciles in flight per guild.
type priority struct {
	mu   sync.Mutex
	live map[string]int
	idle chan struct{} // closed (and replaced) whenever a count drops
}

func newPriority() *priority {
	return &priority{live: map[string]int{}, idle: make(chan struct{})}
}

// enter notes a live reconcile of guild; the returned func ends it.
func (p *priority) enter(guild string) func() {
	p.mu.Lock()
	p.live[guild]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.live[guild]--; p.live[guild] <= 0 {
				delete(p.live, guild)
			}
			close(p.idle)
			p.idle = make(chan struct{})
			p.mu.Unlock()
		})
	}
}

// busy reports whether live work of guild is in flight.
func (p *priority) busy(guild string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live[guild] > 0
}

// gateRecheck is how often a waiting low-priority call looks again whether
// it has been boosted.
const gateRecheck = 50 * time.Millisecond

// wait blocks a low-priority call of guild while live work of that guild is
// in flight. It returns at once for live work.
func (p *priority) wait(ctx context.Context, guild string) error {
	for isLow(ctx) {
		p.mu.Lock()
		n, ch := p.live[guild], p.idle
		p.mu.Unlock()
		if n == 0 {
			return nil
		}
		t := time.NewTimer(gateRecheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// yield reports whether a low-priority call that holds a limiter ticket
// should give it back to live work.
func (p *priority) yield(ctx context.Context, guild string) bool {
	return isLow(ctx) && p.busy(guild)
}
