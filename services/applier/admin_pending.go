package applier

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// pendingDetail is the detail of a status marked pending on receipt.
const pendingDetail = "a change was received and is being applied"

// markPending records, as soon as a message for a member arrives (before
// its reconcile runs, and while it waits behind or is coalesced into
// another), that the member has a known change not yet applied (DESIGN.md
// property 7): the stored status becomes pending with the message's trace
// id, so that `scimcord status` never says in_sync while Discord still has
// the old roles. Only a finished reconcile writes in_sync again.
//
// Cost: one KV read per member per message, and one compare-and-set write
// unless the status is already pending. A member without a status yet is
// left alone (the operator view reports the difference; see adminStatus),
// so that no pending status outlives a record that does not exist. The
// fields of the last status (Discord id, roles, last action) are kept.
func (s *Service) markPending(ctx context.Context, tenant, guild, user string) {
	if s.status == nil || s.status.kv == nil || !eventbus.ValidToken(user) {
		return
	}
	key := eventbus.StatusKey(tenant, guild, user)
	e, err := s.status.kv.Get(ctx, key)
	if err != nil {
		return // no status yet, or NATS trouble: the reconcile writes one
	}
	var st Status
	if json.Unmarshal(e.Value(), &st) != nil || st.State == StatePending {
		return
	}
	st.State, st.Code, st.Detail = StatePending, 0, pendingDetail
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		st.TraceID = sc.TraceID().String()
	}
	st.Time = time.Now().UTC()
	data, err := json.Marshal(st)
	if err != nil {
		return
	}
	// Compare-and-set: a reconcile that finished meanwhile wrote a newer
	// status, which stands.
	if _, err := s.status.kv.Update(ctx, key, data, e.Revision()); err != nil {
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) && !errors.Is(err, jetstream.ErrKeyExists) {
			s.log.DebugContext(ctx, "cannot mark member pending", "tenant", tenant, "guild", guild, "user", user, "error", err)
		}
		return
	}
	s.status.notePendingJoin(key, st)
}

// pendingView is what the operator sees for a member whose stored status
// says in_sync (or that has none) while the desired and the actual managed
// roles differ right now: pending — a change is known and not applied yet
// (or Discord was changed by hand and the drift repair has not run). The
// stored status itself is unchanged.
func pendingView(st *Status, tenant, guild, user string, add, rm []string) *Status {
	if len(add) == 0 && len(rm) == 0 {
		return st
	}
	if st != nil && st.State != StateInSync {
		return st
	}
	v := Status{Tenant: tenant, Guild: guild, User: user, Time: time.Now().UTC()}
	if st != nil {
		v = *st
	}
	v.State = StatePending
	v.Detail = "desired and actual roles differ: not applied yet (stored status: " + storedState(st) + ")"
	return &v
}

func storedState(st *Status) string {
	if st == nil {
		return "none"
	}
	return string(st.State)
}

type planStartKey struct{}

// withPlanStart records when a reconcile read the state it plans from.
func withPlanStart(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, planStartKey{}, t)
}

// supersededByPending reports whether a final status (in_sync) computed from
// state read at the plan start must not be written, because a message that
// arrived after that read marked the member pending (markPending): the
// state this reconcile saw may already be stale, and the newer message's
// reconcile writes the status. Without it, a reconcile that read the store
// just before a change would report in_sync while Discord still has the old
// roles (DESIGN.md property 7).
func (s *Service) supersededByPending(ctx context.Context, st Status) bool {
	if st.State != StateInSync || s.status == nil || s.status.kv == nil {
		return false
	}
	start, ok := ctx.Value(planStartKey{}).(time.Time)
	if !ok {
		return false
	}
	e, err := s.status.kv.Get(ctx, eventbus.StatusKey(st.Tenant, st.Guild, st.User))
	if err != nil {
		return false
	}
	var cur Status
	if json.Unmarshal(e.Value(), &cur) != nil {
		return false
	}
	return cur.State == StatePending && cur.Detail == pendingDetail && cur.Time.After(start)
}
