package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/tenants"
)

// ErrBrakeEngaged means a removal is held by the mass-removal brake.
var ErrBrakeEngaged = errors.New("applier: mass-removal brake engaged")

// ErrGracePeriod means a kick or ban waits for the end of the grace period.
var ErrGracePeriod = errors.New("applier: deprovisioning grace period running")

// brake holds removals (managed roles taken away, kicks, bans) when one burst
// would hit more than a configured number or share of a guild's members,
// until an operator allows them. Its state lives in a KV bucket (one record
// per guild, updated with compare-and-set), so every replica counts the same
// burst and a restart does not release held removals.
type brake struct {
	maxCount int // defaults; a guild's brake_max_count/brake_max_share override them
	maxShare float64
	window   time.Duration
	guilds   map[string]tenants.Guild // guild id → its configuration (overrides)

	mu sync.Mutex
	kv jetstream.KeyValue // nil until the service opened its buckets
}

// brakeRecord is one guild's brake state.
type brakeRecord struct {
	Members map[string]time.Time `json:"members"` // member → removal admitted in the window
	Held    map[string]time.Time `json:"held"`    // member → held since
	Size    int                  `json:"size"`    // known member count (0 = unknown)
	Allowed time.Time            `json:"allowed_until"`
}

func newBrake(maxCount int, maxShare float64, window time.Duration, ts *tenants.Set) *brake {
	b := &brake{maxCount: maxCount, maxShare: maxShare, window: window, guilds: map[string]tenants.Guild{}}
	if ts != nil {
		for _, t := range ts.All() {
			for _, g := range t.Guilds {
				if _, seen := b.guilds[g.ID]; !seen {
					b.guilds[g.ID] = g
				}
			}
		}
	}
	return b
}

// limits returns a guild's brake settings: its own, or the defaults.
func (b *brake) limits(guild string) (count int, share float64) {
	count, share = b.maxCount, b.maxShare
	if g, ok := b.guilds[guild]; ok {
		if g.BrakeMaxCount != nil {
			count = *g.BrakeMaxCount
		}
		if g.BrakeMaxShare != nil {
			share = *g.BrakeMaxShare
		}
	}
	return count, share
}

// on reports whether the brake is on in guild (count 0 = off).
func (b *brake) on(guild string) bool {
	if b == nil {
		return false
	}
	c, _ := b.limits(guild)
	return c > 0 && b.window > 0
}

func (b *brake) bucket() jetstream.KeyValue {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kv
}

// limit is the number of members a burst may remove from in guild.
func (b *brake) limit(guild string, r *brakeRecord) int {
	lim, share := b.limits(guild)
	if s := int(share * float64(r.Size)); r.Size > 0 && s > lim {
		lim = s
	}
	return lim
}

// update applies fn to a guild's record with compare-and-set.
func (b *brake) update(guild string, fn func(r *brakeRecord) error) error {
	kv := b.bucket()
	if kv == nil {
		return errors.New("applier: brake state not available yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		var rec brakeRecord
		var rev uint64
		e, err := kv.Get(ctx, guild)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("applier: read brake of %s: %w", guild, err)
		default:
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return fmt.Errorf("applier: decode brake of %s: %w", guild, err)
			}
			rev = e.Revision()
		}
		if rec.Members == nil {
			rec.Members = map[string]time.Time{}
		}
		if rec.Held == nil {
			rec.Held = map[string]time.Time{}
		}
		fnErr := fn(&rec)
		data, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = kv.Create(ctx, guild, data)
		} else {
			_, err = kv.Update(ctx, guild, data, rev)
		}
		if err == nil {
			return fnErr
		}
		if attempt < 20 && (errors.Is(err, jetstream.ErrKeyExists) || isWrongRevision(err)) {
			continue // another replica changed it: read again
		}
		return fmt.Errorf("applier: write brake of %s: %w", guild, err)
	}
}

// setSize records a guild's member count (from drift repair).
func (b *brake) setSize(guild string, n int) {
	if b == nil || !b.on(guild) {
		return
	}
	_ = b.update(guild, func(r *brakeRecord) error { r.Size = n; return nil })
}

// admit reports whether a removal for member may proceed now; engaged is
// true when this call engaged the brake (nothing was held before), so a
// brake event is logged once, not once per member and recheck.
func (b *brake) admit(guild, member string, now time.Time) (engaged bool, err error) {
	if b == nil || !b.on(guild) {
		return false, nil
	}
	err = b.update(guild, func(r *brakeRecord) error {
		engaged = false
		for m, at := range r.Members {
			if now.Sub(at) > b.window {
				delete(r.Members, m)
			}
		}
		for m, at := range r.Held { // held removals are refreshed at every recheck
			if now.Sub(at) > b.window {
				delete(r.Held, m)
			}
		}
		if now.Before(r.Allowed) {
			r.Members[member] = now
			delete(r.Held, member)
			return nil
		}
		if _, ok := r.Members[member]; ok || len(r.Members) < b.limit(guild, r) {
			r.Members[member] = now
			delete(r.Held, member)
			return nil
		}
		engaged = len(r.Held) == 0
		r.Held[member] = now
		return fmt.Errorf("%w: guild %s: removals from %d members within %s (limit %d); %d held until an operator allows them",
			ErrBrakeEngaged, guild, len(r.Members)+len(r.Held), b.window, b.limit(guild, r), len(r.Held))
	})
	return engaged, err
}

// stillHeld reports, without changing the record, whether a removal of
// member that the brake holds would still be held now: a held member's
// recheck costs one read of the brake record, not a Discord call.
func (b *brake) stillHeld(guild, member string, now time.Time) bool {
	if b == nil || !b.on(guild) {
		return false
	}
	kv := b.bucket()
	if kv == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, guild)
	if err != nil {
		return false // unknown: reconcile (admit decides)
	}
	var r brakeRecord
	if json.Unmarshal(e.Value(), &r) != nil {
		return false
	}
	if _, held := r.Held[member]; !held || now.Before(r.Allowed) {
		return false
	}
	if at, ok := r.Members[member]; ok && now.Sub(at) <= b.window {
		return false
	}
	recent := 0
	for _, at := range r.Members {
		if now.Sub(at) <= b.window {
			recent++
		}
	}
	return recent >= b.limit(guild, &r)
}

// BrakeState is the mass-removal brake of one guild.
type BrakeState struct {
	Guild   string   `json:"guild"`
	Engaged bool     `json:"engaged"`
	Recent  int      `json:"recent_removals"`
	Limit   int      `json:"limit"`
	Held    []string `json:"held_members"` // Discord user ids
}

// Brakes reports the mass-removal brake of every guild that removed something.
func (s *Service) Brakes() []BrakeState {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.open(ctx); err != nil {
		return nil
	}
	kv := s.brake.bucket()
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil
	}
	var out []BrakeState
	for guild := range lister.Keys() {
		e, err := kv.Get(ctx, guild)
		if err != nil {
			continue
		}
		var r brakeRecord
		if json.Unmarshal(e.Value(), &r) != nil {
			continue
		}
		recent := 0
		for _, at := range r.Members {
			if time.Since(at) <= s.brake.window {
				recent++
			}
		}
		st := BrakeState{Guild: guild, Engaged: len(r.Held) > 0, Recent: recent, Limit: s.brake.limit(guild, &r), Held: sortedKeys(r.Held)}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Guild < out[j].Guild })
	return out
}

// AllowRemovals is the operator's allow: the held removals of guild (and any
// other removal in it for one brake window) proceed, within BrakeRecheck.
func (s *Service) AllowRemovals(ctx context.Context, guild string) {
	held := 0
	err := s.open(ctx)
	if err == nil {
		err = s.brake.update(guild, func(r *brakeRecord) error {
			held = len(r.Held)
			r.Allowed = time.Now().Add(s.brake.window)
			return nil
		})
	}
	if err != nil {
		s.log.ErrorContext(ctx, "cannot allow mass removals", "guild", guild, "error", err)
		return
	}
	s.log.WarnContext(ctx, "mass removals allowed by operator", "guild", guild, "held", held, "for", s.brake.window)
}
