package applier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBrakeEngaged means a removal is held by the mass-removal brake.
var ErrBrakeEngaged = errors.New("applier: mass-removal brake engaged")

// ErrGracePeriod means a kick or ban waits for the end of the grace period.
var ErrGracePeriod = errors.New("applier: deprovisioning grace period running")

// brake holds removals (managed roles taken away, kicks, bans) when one burst
// would hit more than a configured number or share of a guild's members,
// until an operator allows them.
type brake struct {
	mu       sync.Mutex
	maxCount int
	maxShare float64
	window   time.Duration
	guilds   map[string]*brakeGuild
}

type brakeGuild struct {
	members map[string]time.Time // member → last removal admitted in the window
	size    int                  // known member count (0 = unknown)
	held    map[string]bool
	allowed time.Time // removals are allowed without limit until then
}

func newBrake(maxCount int, maxShare float64, window time.Duration) *brake {
	return &brake{maxCount: maxCount, maxShare: maxShare, window: window, guilds: map[string]*brakeGuild{}}
}

func (b *brake) guild(id string) *brakeGuild {
	g := b.guilds[id]
	if g == nil {
		g = &brakeGuild{members: map[string]time.Time{}, held: map[string]bool{}}
		b.guilds[id] = g
	}
	return g
}

// setSize records a guild's member count (from drift repair or preflight).
func (b *brake) setSize(guild string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.guild(guild).size = n
}

// limit is the number of members a burst may remove from.
func (b *brake) limitLocked(g *brakeGuild) int {
	lim := b.maxCount
	if s := int(b.maxShare * float64(g.size)); g.size > 0 && s > lim {
		lim = s
	}
	return lim
}

// admit reports whether a removal for member may proceed now.
func (b *brake) admit(guild, member string, now time.Time) error {
	if b == nil || b.maxCount <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.guild(guild)
	for m, at := range g.members {
		if now.Sub(at) > b.window {
			delete(g.members, m)
		}
	}
	if now.Before(g.allowed) {
		g.members[member] = now
		delete(g.held, member)
		return nil
	}
	if _, ok := g.members[member]; ok || len(g.members) < b.limitLocked(g) {
		g.members[member] = now
		return nil
	}
	g.held[member] = true
	return fmt.Errorf("%w: guild %s: removals from %d members within %s (limit %d); %d held until an operator allows them",
		ErrBrakeEngaged, guild, len(g.members)+len(g.held), b.window, b.limitLocked(g), len(g.held))
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
	b := s.brake
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []BrakeState
	for _, id := range sortedKeys(b.guilds) {
		g := b.guilds[id]
		st := BrakeState{Guild: id, Engaged: len(g.held) > 0, Recent: len(g.members), Limit: b.limitLocked(g)}
		st.Held = sortedKeys(g.held)
		out = append(out, st)
	}
	return out
}

// AllowRemovals is the operator's allow: the held removals of guild (and any
// other removal in it for one brake window) proceed. The held messages are
// retried within BrakeRecheck.
func (s *Service) AllowRemovals(_ context.Context, guild string) {
	b := s.brake
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.guild(guild)
	g.allowed = time.Now().Add(b.window)
	s.log.Warn("mass removals allowed by operator", "guild", guild, "held", len(g.held), "for", b.window)
}
