package applier

import (
	"context"
	"time"
)

// Without a gateway connection the applier does not see a member join. A
// member whose Discord user was not in the guild (pending_join) is therefore
// re-checked every PendingJoinInterval, at low priority (behind live
// changes, within the rate limits) and at most PendingJoinBatch members per
// round, the ones checked longest ago first: a member who joins gets their
// roles within about one interval instead of at the next drift repair.

// pendingJoinLoop re-checks pending_join members until ctx ends.
func (s *Service) pendingJoinLoop(ctx context.Context) {
	if err := s.status.loadPendingJoins(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "cannot read pending_join members; only new ones are re-checked", "error", err)
	}
	t := time.NewTicker(s.cfg.PendingJoinInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.recheckPendingJoins(ctx)
	}
}

// recheckPendingJoins reconciles one batch of pending_join members and
// returns how many it checked.
func (s *Service) recheckPendingJoins(ctx context.Context) int {
	ctx = lowPriority(ctx, nil)
	n := 0
	for _, st := range s.status.pendingJoins(s.cfg.PendingJoinBatch) {
		tn, ok := s.deps.Tenants.Get(st.Tenant)
		if !ok {
			continue
		}
		for _, g := range tn.Guilds {
			if g.ID != st.Guild {
				continue
			}
			n++
			s.metrics.inc("pending_join_checks")
			if err := s.reconcileWaiting(ctx, tn, g, st.User); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "pending_join re-check failed", "tenant", st.Tenant, "guild", st.Guild, "user", st.User, "error", err)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	return n
}
