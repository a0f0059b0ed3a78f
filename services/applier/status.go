package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

type statusStore struct{ kv jetstream.KeyValue }

func (s *statusStore) put(ctx context.Context, st Status) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("applier: encode status: %w", err)
	}
	if _, err := s.kv.Put(ctx, eventbus.StatusKey(st.Tenant, st.Guild, st.User), data); err != nil {
		return fmt.Errorf("applier: put status %s/%s/%s: %w", st.Tenant, st.Guild, st.User, err)
	}
	return nil
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
