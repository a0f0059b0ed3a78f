package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
//
// The same bucket holds the per-member work items of a group fan-out: a
// member whose reconcile failed is retried from here with its own backoff
// (Attempt), so the group message is acked and its other members are not
// redone. A failed scheduled reconcile is rescheduled with backoff.

type scheduledAction struct {
	Tenant string    `json:"tenant"`
	Guild  string    `json:"guild"`
	User   string    `json:"user"`
	Action string    `json:"action"`
	Due    time.Time `json:"due"`
	// Attempt counts the failed reconciles of this entry (backoff).
	Attempt int `json:"attempt,omitempty"`
}

// actionRetry is the schedule entry of a member whose reconcile failed.
const actionRetry = "retry"

// actionHeld prefixes the schedule entry of a removal held by the brake.
const actionHeld = "held: "

// heldDiscordID is the Discord id of a held member (the brake counts
// Discord ids), from its status; "" if unknown (then it is reconciled).
func (s *Service) heldDiscordID(ctx context.Context, a scheduledAction) string {
	st, err := s.status.get(ctx, a.Tenant, a.Guild, a.User)
	if err != nil {
		return ""
	}
	return st.DiscordUserID
}

// retryDelay is how long to wait before reconciling again after err, the
// attempt-th failure: the delay the error asks for, or the backoff.
func (s *Service) retryDelay(err error, attempt int) time.Duration {
	if d, ok := eventbus.RetryDelay(err); ok && d > 0 {
		return d
	}
	return s.backoff(uint64(max(attempt, 1)))
}

// scheduleRetry makes a member whose reconcile failed its own work item,
// due after the error's delay or the backoff of attempt. An entry that is
// due earlier is kept (it reconciles the member anyway).
func (s *Service) scheduleRetry(ctx context.Context, tenant, guild, user string, cause error, attempt int) error {
	due := time.Now().Add(s.retryDelay(cause, attempt))
	key := eventbus.StatusKey(tenant, guild, user)
	if e, err := s.scheduled.Get(ctx, key); err == nil {
		var a scheduledAction
		if json.Unmarshal(e.Value(), &a) == nil && !a.Due.After(due) {
			return nil
		}
	}
	data, _ := json.Marshal(scheduledAction{Tenant: tenant, Guild: guild, User: user, Action: actionRetry, Due: due.UTC(), Attempt: attempt})
	if _, err := s.scheduled.Put(ctx, key, data); err != nil {
		return fmt.Errorf("applier: schedule retry of %s/%s/%s: %w", tenant, guild, user, err)
	}
	s.metrics.inc("retries_scheduled")
	return nil
}

func (s *Service) schedule(ctx context.Context, st Status, action string, due time.Time) error {
	data, _ := json.Marshal(scheduledAction{Tenant: st.Tenant, Guild: st.Guild, User: st.User, Action: action, Due: due.UTC()})
	if _, err := s.scheduled.Put(ctx, eventbus.StatusKey(st.Tenant, st.Guild, st.User), data); err != nil {
		return fmt.Errorf("applier: schedule %s of %s/%s/%s: %w", action, st.Tenant, st.Guild, st.User, err)
	}
	return nil
}

// scheduleClaim is how long a replica that runs a scheduled entry holds it:
// the entry is due again after it if that replica died meanwhile.
const scheduleClaim = 10 * time.Second

// scheduleLoop runs the scheduled actions that are due, each on one replica.
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
			held := strings.HasPrefix(a.Action, actionHeld)
			if held && s.brake.stillHeld(a.Guild, s.heldDiscordID(ctx, a), time.Now()) {
				// Still held: one read of the brake record, no Discord call.
				a.Due = time.Now().Add(jitter(s.cfg.BrakeRecheck)).UTC()
				data, _ := json.Marshal(a)
				if _, err := s.scheduled.Update(ctx, key, data, e.Revision()); err == nil {
					s.metrics.inc("brake_rechecks_held")
				}
				continue
			}
			// Claim the entry (compare-and-set on its revision): one
			// replica runs it; if that replica dies, the entry is due again
			// after scheduleClaim.
			claimed := a
			claimed.Due = time.Now().Add(scheduleClaim).UTC()
			data, _ := json.Marshal(claimed)
			rev, err := s.scheduled.Update(ctx, key, data, e.Revision())
			if err != nil {
				continue // another replica claimed it, or it changed: its new revision is looked at next tick
			}
			for _, g := range tn.Guilds {
				if g.ID != a.Guild {
					continue
				}
				rctx := ctx
				if held {
					rctx = lowPriority(ctx, nil) // a brake recheck is background work
				}
				if err := s.reconcile(rctx, tn, g, a.User); err != nil {
					// Again later, with backoff (not at every tick).
					if !errors.Is(err, ErrMemberBusy) {
						a.Attempt++
					}
					a.Due = time.Now().Add(s.retryDelay(err, a.Attempt)).UTC()
					data, _ := json.Marshal(a)
					if _, uerr := s.scheduled.Update(ctx, key, data, rev); uerr != nil && !isWrongRevision(uerr) {
						s.log.WarnContext(ctx, "cannot reschedule a failed action", "key", key, "error", uerr)
					}
					s.log.WarnContext(ctx, "scheduled action failed, will retry", "tenant", a.Tenant, "guild", a.Guild,
						"user", a.User, "action", a.Action, "attempt", a.Attempt, "due", a.Due, "error", err)
					continue
				}
				// Done, unless the reconcile scheduled it again (new revision).
				if err := s.scheduled.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil &&
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
