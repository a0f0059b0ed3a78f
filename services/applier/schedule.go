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

// A kick or ban waiting for its grace period, and a removal held by the
// mass-removal brake, are not kept as unacked messages (a mass deactivation
// would fill the consumer's ack window and stall every other change): the
// message is acked, and the member is recorded in the schedule bucket
// (Config.ScheduleBucket). scheduleLoop reconciles the member when it is due
// and then clears the entry; the reconcile is level-triggered, so a
// re-activation in the meantime simply finds nothing to do.

type scheduledAction struct {
	Tenant string    `json:"tenant"`
	Guild  string    `json:"guild"`
	User   string    `json:"user"`
	Action string    `json:"action"`
	Due    time.Time `json:"due"`
}

func (s *Service) schedule(ctx context.Context, st Status, action string, due time.Time) error {
	data, _ := json.Marshal(scheduledAction{Tenant: st.Tenant, Guild: st.Guild, User: st.User, Action: action, Due: due.UTC()})
	if _, err := s.scheduled.Put(ctx, eventbus.StatusKey(st.Tenant, st.Guild, st.User), data); err != nil {
		return fmt.Errorf("applier: schedule %s of %s/%s/%s: %w", action, st.Tenant, st.Guild, st.User, err)
	}
	return nil
}

// scheduleLoop runs the scheduled actions that are due.
func (s *Service) scheduleLoop(ctx context.Context) {
	every := min(max(s.cfg.GracePeriod/20, s.cfg.BrakeRecheck/10, 100*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lister, err := s.scheduled.ListKeys(ctx)
		if err != nil {
			continue // none, or JetStream unavailable: next tick
		}
		for key := range lister.Keys() {
			e, err := s.scheduled.Get(ctx, key)
			if err != nil {
				continue
			}
			var a scheduledAction
			if json.Unmarshal(e.Value(), &a) != nil || time.Now().Before(a.Due) {
				continue
			}
			tn, ok := s.deps.Tenants.Get(a.Tenant)
			if !ok {
				_ = s.scheduled.Delete(ctx, key)
				continue
			}
			for _, g := range tn.Guilds {
				if g.ID != a.Guild {
					continue
				}
				if err := s.reconcile(ctx, tn, g, a.User); err != nil {
					s.log.WarnContext(ctx, "scheduled action failed, will retry", "tenant", a.Tenant, "guild", a.Guild,
						"user", a.User, "action", a.Action, "error", err)
					continue
				}
				// Done, unless the reconcile scheduled it again (new revision).
				if err := s.scheduled.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil &&
					!errors.Is(err, jetstream.ErrKeyNotFound) && !isWrongRevision(err) {
					s.log.WarnContext(ctx, "cannot clear a scheduled action", "key", key, "error", err)
				}
			}
		}
	}
}

// isWrongRevision reports a failed compare-and-delete (the entry changed).
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
