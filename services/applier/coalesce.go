package applier

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// coalescer serialises the reconciles of one member and coalesces the
// messages that arrive while one is running: a reconcile covers every message
// that arrived before it read the stored state, so those messages finish with
// its result instead of reconciling again. 50 updates to one user while
// Discord is busy therefore cost one reconcile after the busy one, not 50.
type coalescer struct {
	mu sync.Mutex
	m  map[string]*coalesceEntry
}

type coalesceEntry struct {
	gen     uint64 // messages seen
	doneGen uint64 // messages covered by a successful reconcile
	running bool
	refs    int
	wake    chan struct{}
	// result of the last failed run and the generation it had read
	errGen uint64
	err    error
	// links are the span contexts of the messages waiting on this member,
	// by generation: the reconcile that covers them links to each.
	links map[uint64]trace.SpanContext
}

func newCoalescer() *coalescer { return &coalescer{m: map[string]*coalesceEntry{}} }

// run is one reconcile. mark must be called just before it reads state; stale
// reports whether a newer message arrived since mark.
type runFunc func(ctx context.Context, mark func(), stale func() bool) error

// Do runs fn for key unless a reconcile that starts after this call returns
// covers it; it returns that reconcile's result.
func (c *coalescer) Do(ctx context.Context, key string, fn runFunc) error {
	c.mu.Lock()
	e := c.m[key]
	if e == nil {
		e = &coalesceEntry{wake: make(chan struct{})}
		c.m[key] = e
	}
	e.gen++
	my := e.gen
	e.refs++
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		if e.links == nil {
			e.links = map[uint64]trace.SpanContext{}
		}
		e.links[my] = sc
	}
	defer func() {
		c.mu.Lock()
		delete(e.links, my)
		e.refs--
		if e.refs == 0 && !e.running {
			delete(c.m, key)
		}
		c.mu.Unlock()
	}()
	for {
		if e.doneGen >= my {
			c.mu.Unlock()
			trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("scimcord.coalesced", true))
			return nil
		}
		if e.err != nil && e.errGen >= my {
			err := e.err
			c.mu.Unlock()
			return err
		}
		if !e.running {
			e.running = true
			var read uint64
			c.mu.Unlock()
			linked := map[uint64]bool{my: true}
			mark := func() {
				c.mu.Lock()
				read = e.gen
				var ls []trace.Link
				for g, sc := range e.links {
					if g <= read && !linked[g] {
						linked[g] = true
						ls = append(ls, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.Bool("scimcord.coalesced", true)}})
					}
				}
				c.mu.Unlock()
				span := trace.SpanFromContext(ctx)
				for _, l := range ls {
					span.AddLink(l)
				}
			}
			stale := func() bool { c.mu.Lock(); defer c.mu.Unlock(); return e.gen > read }
			err := fn(ctx, mark, stale)
			c.mu.Lock()
			e.running = false
			if err == nil {
				if read > e.doneGen {
					e.doneGen = read
				}
			} else {
				e.err, e.errGen = err, read
			}
			close(e.wake)
			e.wake = make(chan struct{})
			if err != nil {
				c.mu.Unlock()
				return err
			}
			if read >= my {
				// This message's own reconcile covered it: not coalesced.
				c.mu.Unlock()
				return nil
			}
			continue
		}
		wake := e.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
}

// waiting reports whether a message waits for the reconcile of key that is
// running (a live message queued behind background work boosts it).
func (c *coalescer) waiting(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	return e != nil && e.running && e.refs > 1
}

// running reports whether a reconcile of key is running.
func (c *coalescer) running(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	return e != nil && e.running
}
