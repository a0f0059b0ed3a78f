package applier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// Replicas keep each member's changes in order (property 2) with a lease per
// member: a key of the lease bucket (Config.LeaseBucket, key
// eventbus.StatusKey(tenant, guild, user)) created with compare-and-set before
// a reconcile reads anything, renewed every LeaseTTL/3 while it runs and
// deleted (compare-and-delete on its revision) when it ends. Entries expire
// after LeaseTTL (the bucket's max age), so the lease of a replica that died
// is free again soon after. A replica that finds the lease held by another
// returns eventbus.Retry(ErrMemberBusy, …): the message comes back a moment
// later and is handled after the holder's reconcile, which read the store
// before the message's write or covers it. Within a replica the coalescer
// serialises reconciles of a member, so one replica asks for a member's lease
// once at a time.
//
// Losing a lease (a renewal that fails: NATS unreachable, or the entry expired
// and another replica took it) cancels the reconcile's context, so it stops
// before its next call.

// ErrMemberBusy means another replica is reconciling the member: the message
// is delayed, not failed.
var ErrMemberBusy = errors.New("applier: another replica is reconciling this member")

// errLeaseLost is the cancel cause of a reconcile whose lease was lost.
var errLeaseLost = errors.New("applier: member lease lost")

// leaseBusyDelay is the base delay of a message whose member is busy.
const leaseBusyDelay = 150 * time.Millisecond

// takeLease creates the lease key, or takes over one this replica left (its
// release failed; the coalescer runs one reconcile of a member at a time per
// replica, so it is not in use); held by another replica → a Retry error.
func (s *Service) takeLease(ctx context.Context, key string) (uint64, error) {
	for attempt := 0; attempt < 3; attempt++ {
		rev, err := s.leases.Create(ctx, key, []byte(s.id))
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("applier: take lease of %s: %w", key, err)
		}
		e, err := s.leases.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // released or expired just now
		case err != nil:
			return 0, fmt.Errorf("applier: read lease of %s: %w", key, err)
		case string(e.Value()) != s.id:
			attempt = 3 // another replica holds it
		default:
			// Ours, left by a release that failed: take it over.
			if rev, err := s.leases.Update(ctx, key, []byte(s.id), e.Revision()); err == nil {
				return rev, nil
			}
		}
	}
	s.metrics.inc("member_busy")
	return 0, eventbus.Retry(fmt.Errorf("%w: %s", ErrMemberBusy, key), jitter(leaseBusyDelay))
}

// holdLease takes the member's lease for the duration of fn, renewing it.
func (s *Service) holdLease(ctx context.Context, tenant, guild, user string, fn func(ctx context.Context) error) error {
	key := eventbus.StatusKey(tenant, guild, user)
	rev, err := s.takeLease(ctx, key)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	var last uint64 = rev
	go func() {
		defer close(renewed)
		t := time.NewTicker(s.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			r, err := s.leases.Update(lctx, key, []byte(s.id), last)
			if err != nil {
				if lctx.Err() == nil {
					s.log.WarnContext(ctx, "member lease lost", "key", key, "error", err)
					cancel(fmt.Errorf("%w: %w", errLeaseLost, err))
				}
				return
			}
			last = r
		}
	}()
	err = fn(lctx)
	cancel(nil)
	<-renewed
	// Released before the message's outcome, so another replica that takes
	// the next message of this member finds the lease free. The delete is
	// compare-and-delete on our last revision: a lease that expired and was
	// taken by another replica is not touched.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer dcancel()
	if derr := s.leases.Delete(dctx, key, jetstream.LastRevision(last)); derr != nil &&
		!errors.Is(derr, jetstream.ErrKeyNotFound) && !isWrongRevision(derr) {
		s.log.WarnContext(ctx, "cannot release member lease; it expires", "key", key, "error", derr)
	}
	if cause := context.Cause(lctx); errors.Is(cause, errLeaseLost) {
		return eventbus.Retry(cause, jitter(leaseBusyDelay)) // done again under a new lease
	}
	return err
}
