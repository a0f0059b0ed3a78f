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

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// State is a member's sync state.
type State string

// The sync states; a member has exactly one.
const (
	StateInSync      State = "in_sync"      // Discord matches the desired state
	StatePending     State = "pending"      // a change is known and waits for the rate limit
	StateRetrying    State = "retrying"     // a transient Discord or dependency error; retried with backoff
	StateFailed      State = "failed"       // a permanent Discord error; see Code, and the dead letter
	StatePendingLink State = "pending_link" // the SCIM user has no Discord user id yet
	StatePendingJoin State = "pending_join" // the Discord user is not in the guild
)

// Status is one member's sync status, stored in the sync_status bucket under
// eventbus.StatusKey(tenant, guild, user).
type Status struct {
	Tenant        string    `json:"tenant"`
	Guild         string    `json:"guild"`
	User          string    `json:"user"`
	DiscordUserID string    `json:"discord_user_id,omitempty"`
	State         State     `json:"state"`
	Code          int       `json:"code,omitempty"`   // Discord error code (failed)
	Detail        string    `json:"detail,omitempty"` // what happened, for operators
	Action        string    `json:"action,omitempty"` // the last Discord change made
	Roles         []string  `json:"roles,omitempty"`  // desired managed roles
	TraceID       string    `json:"trace_id,omitempty"`
	Time          time.Time `json:"time"`
}

// ErrNoStatus means the member has no sync status yet.
var ErrNoStatus = errors.New("applier: no sync status")

type statusStore struct {
	kv jetstream.KeyValue

	mu sync.Mutex
	// pendingJoin holds the members this replica last saw pending_join,
	// with the time of that check (re-checked oldest first).
	pendingJoin map[string]Status
}

func (s *statusStore) put(ctx context.Context, st Status) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("applier: encode status: %w", err)
	}
	key := eventbus.StatusKey(st.Tenant, st.Guild, st.User)
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("applier: put status %s/%s/%s: %w", st.Tenant, st.Guild, st.User, err)
	}
	s.notePendingJoin(key, st)
	return nil
}

func (s *statusStore) notePendingJoin(key string, st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingJoin == nil {
		s.pendingJoin = map[string]Status{}
	}
	if st.State == StatePendingJoin {
		s.pendingJoin[key] = st
	} else {
		delete(s.pendingJoin, key)
	}
}

// loadPendingJoins reads every pending_join status of the bucket (at start:
// members another replica or an earlier run found not in their guild).
func (s *statusStore) loadPendingJoins(ctx context.Context) error {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("applier: list sync statuses: %w", err)
	}
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var st Status
		if json.Unmarshal(e.Value(), &st) == nil && st.State == StatePendingJoin {
			s.notePendingJoin(key, st)
		}
	}
	return nil
}

// pendingJoins returns up to n members last seen pending_join, the ones
// checked longest ago first.
func (s *statusStore) pendingJoins(n int) []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.pendingJoin))
	for _, st := range s.pendingJoin {
		out = append(out, st)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func (s *statusStore) get(ctx context.Context, tenant, guild, user string) (Status, error) {
	e, err := s.kv.Get(ctx, eventbus.StatusKey(tenant, guild, user))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Status{}, fmt.Errorf("applier: status %s/%s/%s: %w", tenant, guild, user, ErrNoStatus)
		}
		return Status{}, fmt.Errorf("applier: status %s/%s/%s: %w", tenant, guild, user, err)
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Status{}, fmt.Errorf("applier: decode status %s/%s/%s: %w", tenant, guild, user, err)
	}
	return st, nil
}
