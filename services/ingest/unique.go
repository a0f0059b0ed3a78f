package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// UniqueBucket holds uniqueness claims (userName, Discord userId, group
// displayName per tenant) so that concurrent creates on different replicas
// cannot both win. It is not part of the event stream: consumers never see it.
const UniqueBucket = "scim_unique"

// Claim kinds.
const (
	claimUserName = "un"
	claimDiscord  = "du"
	claimGroup    = "gn"
)

type claim struct {
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

func claimKey(tenant, kind, value string) string {
	h := sha256.Sum256([]byte(value))
	return tenant + "." + kind + "." + hex.EncodeToString(h[:16])
}

// UserNameClaimKey and DiscordClaimKey are the UniqueBucket keys of a
// tenant's userName and Discord user id; the value's "owner" is the SCIM id
// (a hint: the record stays the truth). The operator API looks users up by them.
func UserNameClaimKey(tenant, userName string) string {
	return claimKey(tenant, claimUserName, lower(userName))
}

// DiscordClaimKey: see UserNameClaimKey.
func DiscordClaimKey(tenant, discordID string) string {
	return claimKey(tenant, claimDiscord, discordID)
}

// claimLease is how long a fresh claim whose owner does not hold the value
// (yet) is respected: the claimer is between its claim and its record write.
func (s *Service) claimLease() time.Duration { return s.cfg.WriteTimeout + time.Second }

// claim makes owner the holder of a unique value, compare-and-set on the
// claim key. A claim held by a resource that still has the value, or a
// claim younger than the lease, is a 409. A stale claim (its owner was
// deleted or renamed) is taken over. The claim is only a guard: the
// resource record remains the truth, and a crash between claim and record
// leaves a claim that goes stale.
func (s *Service) claim(ctx context.Context, tenant, kind, value, owner string) error {
	if value == "" || s.claims == nil {
		return nil
	}
	if !s.connected() {
		return fmt.Errorf("ingest: claim: NATS not connected: %w", eventbus.ErrUnavailable)
	}
	key := claimKey(tenant, kind, value)
	mine, _ := json.Marshal(claim{Owner: owner, At: time.Now().UTC()})
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	for range maxCASRetries {
		// The common case (a new value) costs one round trip.
		_, err := s.claims.Create(ctx, key, mine)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("ingest: claim %s: %w", key, errors.Join(eventbus.ErrUnavailable, err))
		}
		e, err := s.claims.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ingest: read claim %s: %w", key, errors.Join(eventbus.ErrUnavailable, err))
		}
		var c claim
		_ = json.Unmarshal(e.Value(), &c)
		if c.Owner == owner {
			return nil
		}
		s.sync(ctx) // judge the holder on a current view
		switch s.claimState(tenant, kind, value, c) {
		case claimHeld:
			return conflictFor(kind, value)
		case claimMaybeInFlight:
			if time.Since(c.At) < s.claimLease() {
				return conflictFor(kind, value)
			}
		}
		_, err = s.claims.Update(ctx, key, mine, e.Revision())
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("ingest: take over claim %s: %w", key, errors.Join(eventbus.ErrUnavailable, err))
		}
	}
	return conflictFor(kind, value)
}

// releaseClaim deletes owner's claim of a value (compare-and-set on the
// claim's revision), after the write it guarded certainly failed. Best
// effort: a claim left behind goes stale after the lease.
func (s *Service) releaseClaim(ctx context.Context, tenant, kind, value, owner string) {
	if value == "" || s.claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WriteTimeout)
	defer cancel()
	key := claimKey(tenant, kind, value)
	e, err := s.claims.Get(ctx, key)
	if err != nil {
		return
	}
	var c claim
	if json.Unmarshal(e.Value(), &c) != nil || c.Owner != owner {
		return
	}
	if err := s.claims.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		s.log.DebugContext(ctx, "releasing a uniqueness claim failed", "key", key, "error", err)
	}
}

func conflictFor(kind, value string) error {
	switch kind {
	case claimUserName:
		return errf(http.StatusConflict, scimUniqueness, "userName %q is already taken", value)
	case claimDiscord:
		return errf(http.StatusConflict, scimUniqueness, "%s:%s %q belongs to another user", SchemaDiscord, discordUserIDAttr, value)
	}
	return errf(http.StatusConflict, scimUniqueness, "a group with displayName %q already exists", value)
}

type claimStatus int

const (
	claimStale         claimStatus = iota // owner deleted, or changed after the claim
	claimHeld                             // owner has the value
	claimMaybeInFlight                    // owner's write may still be coming
)

// claimState judges a claim held by another resource against the view.
func (s *Service) claimState(tenant, kind, value string, c claim) claimStatus {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	t := s.view.tenant(tenant)
	if t == nil {
		return claimMaybeInFlight
	}
	if _, gone := t.deleted[c.Owner]; gone {
		return claimStale
	}
	var has, exists bool
	var modified time.Time
	switch kind {
	case claimUserName, claimDiscord:
		if u := t.users[c.Owner]; u != nil {
			exists, modified = true, u.modified
			has = (kind == claimUserName && lower(u.userName) == value) || (kind == claimDiscord && u.discordID == value)
		}
	case claimGroup:
		if g := t.groups[c.Owner]; g != nil {
			exists, modified, has = true, g.modified, lower(g.displayName) == value
		}
	}
	switch {
	case has:
		return claimHeld
	case exists && modified.After(c.At):
		return claimStale // the owner took the value and has let it go since
	}
	return claimMaybeInFlight
}
