package applier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// backoff is the delay of the n-th delivery of a message that failed with a
// transient error: RetryBase doubling to RetryMax, with ±20% jitter.
func (s *Service) backoff(n uint64) time.Duration {
	d := s.cfg.RetryBase
	for i := uint64(1); i < n && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return jitter(d)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}

// handle processes one record of the resource stream: it works out which
// members the record affects and reconciles each of them in every guild of
// the tenant. It never acks; the returned error decides (eventbus.Consume).
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) error {
	// Keep the message while we work on it: a replica that dies stops
	// these heartbeats, and another one gets the message after AckWait.
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	key, err := eventbus.ParseKey(msg.Subject())
	if err != nil {
		s.log.WarnContext(ctx, "ignoring record with unknown key", "subject", msg.Subject())
		return nil
	}
	t, ok := s.deps.Tenants.Get(key.Tenant)
	if !ok {
		s.log.WarnContext(ctx, "ignoring record of unknown tenant", "tenant", key.Tenant)
		return nil
	}
	var users []string
	switch key.Kind {
	case "u":
		users = []string{key.ID}
	case "m":
		users = []string{key.UserID}
	case "g":
		if s.cfg.AutoCreateRoles {
			rec, err := s.store.Get(ctx, eventbus.GroupKey(key.Tenant, key.ID))
			if err != nil && !errors.Is(err, eventbus.ErrNotFound) {
				return err
			}
			if err == nil {
				for _, g := range t.Guilds {
					if err := s.ensureGroupRole(ctx, t, g, rec); err != nil {
						var de *DiscordError
						if errors.As(err, &de) && de.Class == ClassPermanent {
							// Reported; the members are still reconciled.
							s.metrics.inc("role_errors")
							s.log.ErrorContext(ctx, "cannot manage the role of a group", "tenant", t.ID, "guild", g.ID,
								"group", key.ID, "code", de.Code, "error", permanentDetail(de))
							continue
						}
						if errors.As(err, &de) && de.Class == ClassRateLimited {
							return eventbus.Retry(err, de.RetryAfter)
						}
						return err
					}
				}
			}
		}
		keys, err := s.store.ListKeys(ctx, eventbus.GroupMembersFilter(key.Tenant, key.ID))
		if err != nil {
			return fmt.Errorf("applier: members of group %s/%s: %w", key.Tenant, key.ID, err)
		}
		for _, k := range keys {
			if mk, err := eventbus.ParseKey(k); err == nil && mk.Kind == "m" {
				users = append(users, mk.UserID)
			}
		}
	}
	if len(users) == 0 || len(t.Guilds) == 0 {
		return nil
	}
	// A group record fans out to its members. A member that fails (a
	// transient error, the rate limit) becomes its own work item in the
	// schedule bucket, retried with its own backoff, and the group message
	// is acked: one bad member neither blocks the others nor makes them be
	// reconciled (and read from Discord) again on every retry.
	fanOut := key.Kind == "g"
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, g := range t.Guilds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Live work of this guild: background calls wait (priority.go).
			defer s.dc.prio.enter(g.ID)()
			for _, u := range users {
				s.markPending(ctx, t.ID, g.ID, u) // property 7: known, not applied yet
			}
			for _, u := range users {
				err := s.reconcile(ctx, t, g, u)
				if err != nil && fanOut && ctx.Err() == nil {
					if serr := s.scheduleRetry(ctx, t.ID, g.ID, u, err, 1); serr == nil {
						continue
					} else {
						err = errors.Join(err, serr)
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return combine(errs)
}

// combine merges per-member errors into the message's outcome: the longest
// requested delay wins; any other error retries with backoff.
func combine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	var delay time.Duration
	plain := false
	for _, e := range errs {
		if d, ok := eventbus.RetryDelay(e); ok {
			delay = max(delay, d)
		} else {
			plain = true
		}
	}
	err := errors.Join(errs...)
	if plain {
		return err
	}
	return eventbus.Retry(err, delay)
}

// reconcile brings one member of one guild to the desired state. Reconciles
// of one member are serialised and coalesced.
func (s *Service) reconcile(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string) error {
	key := t.ID + "|" + g.ID + "|" + userID
	return s.coal.Do(ctx, key, func(ctx context.Context, mark func(), stale func() bool) error {
		s.metrics.inc("reconciles")
		if markedLow(ctx) {
			// Background work for this member: boosted past the priority
			// gate as soon as a live message waits for it.
			ctx = lowPriority(ctx, func() bool { return s.coal.waiting(key) })
		} else {
			defer s.dc.prio.enter(g.ID)()
		}
		// One replica at a time per member (lease.go): a message for a
		// member another replica is reconciling comes back a moment later.
		return s.holdLease(ctx, t.ID, g.ID, userID, func(ctx context.Context) error {
			return s.reconcileOnce(ctx, t, g, userID, mark, stale)
		})
	})
}

// actionKickUnanswered is the status action of a kick sent without an answer
// (a transport error or 5xx): it may have been applied.
const actionKickUnanswered = "kick (no answer)"

// plan is the outcome of comparing the desired with the actual state.
type plan struct {
	user      *eventv1.User
	discordID string
	policy    tenants.Action // "" for a normal sync
	desired   []string       // desired managed roles
	managed   []string
	current   []string
	add, rm   []string
	target    []string // the full role list for a PATCH
	inGuild   bool
	deferred  tenants.Action // a kick or ban waiting for the grace period
	due       time.Time      // end of the grace period
	// readAt is when current was read from Discord (zero: not read by a
	// GET just now). A PATCH, which replaces the whole role list, is only
	// sent within FreshRoles of it.
	readAt time.Time
	// desiredAt is when the desired state (read from the store and mapping
	// after the GET) was known. No change is sent from a desired state
	// older than FreshRoles: a long limiter wait before the send means plan
	// again.
	desiredAt time.Time
}

func (s *Service) reconcileOnce(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string, mark func(), stale func() bool) error {
	ctx, span := s.tracer.Start(ctx, "applier.reconcile", trace.WithAttributes(
		attribute.String("scimcord.tenant", t.ID), attribute.String("discord.guild_id", g.ID),
		attribute.String("scim.user_id", userID)))
	defer span.End()
	st := Status{Tenant: t.ID, Guild: g.ID, User: userID}
	if sc := span.SpanContext(); sc.HasTraceID() {
		st.TraceID = sc.TraceID().String() // "" when nothing is traced
	}
	log := s.log.With("tenant", t.ID, "guild", g.ID, "user", userID)

	stales := 0         // PATCHes refused because the roles read had grown too old
	var known *[]string // roles read before a wait, for a one-role PUT/DELETE only
	for attempt := 0; ; attempt++ {
		mark()
		ctx = withPlanStart(ctx, time.Now())
		// Roles read before a wait are never the base of a PATCH: a plan
		// from known roles has no readAt, so execute refuses a PATCH from it
		// (errStaleRoles) and it is planned again from a fresh GET.
		p, err := s.planWith(ctx, t, g, userID, known)
		known = nil
		if err != nil {
			if errors.Is(err, eventbus.ErrNotFound) {
				s.clearDeadLetter(ctx, t.ID, g.ID, userID)
				return nil // nothing stored under this user: nothing to do
			}
			span.RecordError(err)
			span.SetStatus(codes.Error, "plan")
			return s.fail(ctx, log, st, p, err)
		}
		if p.user != nil {
			st.DiscordUserID = p.discordID
			st.Roles = p.desired
		}
		switch {
		case p.discordID == "":
			st.State, st.Detail = StatePendingLink, "the SCIM user has no Discord user id yet"
			return s.putStatus(ctx, st)
		case p.policy == tenants.ActionNone:
			st.State, st.Detail = StateInSync, "deprovisioning policy none: member left as is"
			return s.putStatus(ctx, st)
		case !p.inGuild && (p.policy == tenants.ActionKick || p.policy == tenants.ActionStrip):
			st.State, st.Detail = StateInSync, "not in the guild; nothing to remove"
			if p.policy == tenants.ActionKick {
				if prev, err := s.status.get(ctx, t.ID, g.ID, userID); err == nil && prev.Action == actionKickUnanswered {
					// The kick we sent is the likely reason: say so.
					st.Action, st.Detail = "kick", "kicked (answer lost): not in the guild any more after a kick whose answer never came"
				}
			}
			return s.putStatus(ctx, st)
		case !p.inGuild && p.policy == "":
			st.State, st.Code, st.Detail = StatePendingJoin, codeUnknownMember, "the Discord user is not a member of the guild; applied when they join"
			return s.putStatus(ctx, st)
		}
		if !p.inGuild && p.policy == tenants.ActionBan {
			if prev, err := s.status.get(ctx, t.ID, g.ID, userID); err == nil && prev.Action == "ban" {
				st.State, st.Action, st.Detail = StateInSync, "ban", "banned"
				return s.putStatus(ctx, st)
			}
		}
		route, op := s.route(g.ID, p)
		if op != "" && p.inGuild {
			why, err := s.protection(ctx, g.ID, p.discordID, p.current)
			if err != nil {
				return s.fail(ctx, log, st, p, err) // retried: never change a member we cannot verify
			}
			if why != "" {
				st.State, st.Code, st.Detail = StateFailed, 0, why
				return s.putStatus(ctx, st)
			}
		}
		if op != "" {
			if len(p.rm) > 0 || p.policy == tenants.ActionKick || p.policy == tenants.ActionBan {
				if engaged, err := s.brake.admit(g.ID, p.discordID, time.Now()); err != nil {
					st.State, st.Detail = StatePending, err.Error()
					s.metrics.inc("brake_held")
					if engaged {
						// One WARN per brake event; each held member at debug.
						log.WarnContext(ctx, "mass-removal brake engaged, removals held until an operator allows them", "op", op, "error", err)
					} else {
						log.DebugContext(ctx, "removal held by the mass-removal brake", "op", op, "error", err)
					}
					if serr := s.schedule(ctx, st, actionHeld+op, time.Now().Add(jitter(s.cfg.BrakeRecheck))); serr != nil {
						return eventbus.Retry(err, jitter(s.cfg.BrakeRecheck))
					}
					return s.putStatus(ctx, st)
				}
			}
			// Coalescing: if the call must wait, wait first, then plan again
			// from the stored state, so that changes written meanwhile (and
			// messages not even delivered yet) ride on the same call.
			if wait := s.limiter.NextFree(route); wait > 0 && attempt < 3 {
				if wait > s.cfg.MaxRateWait {
					st.State, st.Detail = StatePending, fmt.Sprintf("waiting %s for the Discord rate limit", wait.Round(time.Millisecond))
					_ = s.putStatus(ctx, st)
					s.metrics.inc("deferred")
					return eventbus.Retry(&WaitError{Route: route, Delay: wait}, wait+jitter(wait/10))
				}
				if err := sleepCtx(ctx, wait, nil); err != nil {
					return err
				}
				if p.inGuild && len(p.add)+len(p.rm) == 1 && !stale() {
					// A one-role PUT/DELETE touches no other role: it may be
					// planned from the roles read before the wait (no second
					// GET). Anything that needs a PATCH reads again.
					cur := p.current
					known = &cur
				}
				s.metrics.inc("replanned")
				continue
			}
			reason := fmt.Sprintf("%s: %s user %s (trace %s)", s.cfg.AuditReason, op, userID, st.TraceID)
			if err := s.execute(ctx, g.ID, p, op, reason); err != nil {
				if errors.Is(err, errStaleRoles) {
					// The limiter held the call past FreshRoles: plan again.
					// A one-role PUT/DELETE touches no other role, so only
					// the desired state is read again (no new GET).
					s.metrics.inc("replanned")
					if p.inGuild && len(p.add)+len(p.rm) == 1 && p.policy == "" {
						cur := p.current
						known = &cur
					}
					if stales++; stales < 5 {
						continue
					}
					st.State, st.Detail = StatePending, "waiting for a fresh read of the member's roles"
					_ = s.putStatus(ctx, st)
					return eventbus.Retry(err, jitter(s.cfg.MaxRateWait))
				}
				var de *DiscordError
				if errors.As(err, &de) && de.Class == ClassUnknownMember && p.policy == "" {
					st.State, st.Code, st.Detail = StatePendingJoin, codeUnknownMember, "the Discord user is not a member of the guild; applied when they join"
					return s.putStatus(ctx, st)
				}
				if errors.As(err, &de) && de.Class == ClassUnknownMember {
					st.State, st.Detail = StateInSync, "not in the guild; nothing to remove"
					return s.putStatus(ctx, st)
				}
				span.RecordError(err)
				span.SetStatus(codes.Error, op)
				if op == "kick" && errors.As(err, &de) && de.Class == ClassTransient {
					// Sent, answer lost (or never arrived): recorded, so the
					// retry that finds the member gone can tell a kick did it.
					st.Action = actionKickUnanswered
				}
				return s.fail(ctx, log, st, p, err)
			}
			s.metrics.inc("changes")
			st.Action = op
			log.InfoContext(ctx, "member reconciled", "action", op, "added", p.add, "removed", p.rm)
		}
		if p.deferred != "" {
			st.State = StatePending
			st.Detail = fmt.Sprintf("%s scheduled at %s (grace period); managed roles removed meanwhile", p.deferred, p.due.UTC().Format(time.RFC3339))
			if err := s.schedule(ctx, st, string(p.deferred), p.due); err != nil {
				return err
			}
			return s.putStatus(ctx, st)
		}
		st.State, st.Detail = StateInSync, ""
		if op == "" && p.inGuild {
			st.Detail = "no change needed"
		}
		return s.putStatus(ctx, st)
	}
}

// plan reads the current state (store, mapping, Discord) and computes the diff.
func (s *Service) plan(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string) (plan, error) {
	return s.planWith(ctx, t, g, userID, nil)
}

// planWith is plan with the member's roles already known (drift repair lists
// them, or a one-role change planned before a wait); known nil means GET the
// member. The desired state (store and mapping) is always read after the
// member's roles: a diff never uses a desired state read before a wait (the
// GET may wait for the rate limit and the network).
func (s *Service) planWith(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string, known *[]string) (plan, error) {
	if known != nil {
		p, err := s.desiredState(ctx, t, g, userID, true)
		if err != nil || p.discordID == "" || p.policy == tenants.ActionNone {
			return p, err
		}
		// Only for planning: a PATCH is never sent from these roles (readAt
		// stays zero, execute refuses it); a one-role PUT/DELETE may be.
		p.inGuild, p.current = true, *known
		p.add, p.rm, p.target = diff(p.current, p.desired, p.managed)
		return p, nil
	}
	for attempt := 0; ; attempt++ {
		head, err := s.desiredState(ctx, t, g, userID, false) // the user record: who to GET
		if err != nil || head.discordID == "" || head.policy == tenants.ActionNone {
			return head, err
		}
		cur, err := s.dc.Member(ctx, g.ID, head.discordID)
		readAt := time.Now()
		inGuild := true
		if err != nil {
			var de *DiscordError
			if !errors.As(err, &de) || de.Class != ClassUnknownMember {
				return head, err
			}
			inGuild = false
		}
		p, err := s.desiredState(ctx, t, g, userID, true)
		if err != nil || p.discordID == "" || p.policy == tenants.ActionNone {
			return p, err
		}
		if p.discordID != head.discordID {
			// Linked to another Discord user while we read: read that one.
			if attempt < 2 {
				continue
			}
			return p, eventbus.Retry(fmt.Errorf("applier: discord id of %s/%s keeps changing", t.ID, userID), jitter(s.cfg.RetryBase))
		}
		p.readAt = readAt
		if inGuild {
			p.inGuild, p.current = true, cur
			p.add, p.rm, p.target = diff(cur, p.desired, p.managed)
		}
		return p, nil
	}
}

// desiredState reads the user record and, with full, the user's groups and
// the mapping's answer: the desired managed roles (no Discord call). Without
// full it stops after the record (Discord id and policy).
func (s *Service) desiredState(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string, full bool) (plan, error) {
	var p plan
	rec, err := s.store.Get(ctx, eventbus.UserKey(t.ID, userID))
	if err != nil {
		return p, err
	}
	u := rec.Event.GetUser()
	if u == nil {
		return p, fmt.Errorf("applier: record %s is not a user: %w", rec.Key, eventbus.ErrNotFound)
	}
	p.user, p.discordID = u, u.GetDiscordUserId()
	deleted := u.GetDeleted() || rec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE
	switch {
	case deleted:
		p.policy = g.OnDelete
	case !u.GetActive():
		p.policy = g.OnDeactivate
	}
	grace := s.cfg.GracePeriod
	if d, ok := g.Grace(); ok {
		grace = d // the guild's own grace_period
	}
	if (p.policy == tenants.ActionKick || p.policy == tenants.ActionBan) && grace > 0 {
		changed := rec.Event.GetTime().AsTime() // ingest stamps every change; none → no grace
		if due := changed.Add(grace); time.Now().Before(due) {
			p.deferred, p.due, p.policy = p.policy, due, tenants.ActionStrip
		}
	}
	if p.discordID == "" || p.policy == tenants.ActionNone || !full {
		return p, nil
	}
	groups, err := s.groupsOf(ctx, t.ID, userID)
	if err != nil {
		return p, err
	}
	userJSON, dropped, err := mappingUserJSON(rec.Event.GetSnapshot())
	if err != nil {
		return p, fmt.Errorf("applier: resolve roles of %s/%s in %s: %w", t.ID, userID, g.ID, err)
	}
	if dropped > 0 {
		s.metrics.inc("user_attributes_dropped")
	}
	req := &mappingv1.ResolveRolesRequest{
		TenantId: t.ID, GuildId: g.ID, Groups: groups, Active: u.GetActive() && !deleted,
		UserJson: userJSON, UserId: userID,
	}
	if n := proto.Size(req); n > maxMappingRequest {
		return p, fmt.Errorf("applier: resolve roles of %s/%s in %s: %w: %d bytes with %d groups (limit %d)",
			t.ID, userID, g.ID, ErrMappingRequestTooLarge, n, len(groups), maxMappingRequest)
	}
	res, err := s.deps.Mapping.ResolveRoles(ctx, req)
	if err != nil {
		return p, fmt.Errorf("applier: resolve roles of %s/%s in %s: %w", t.ID, userID, g.ID, err)
	}
	s.noteRules(ctx, g.ID, res.GetRulesVersion())
	p.managed = res.GetManagedRoleIds()
	p.desired = res.GetRoleIds()
	if s.cfg.AutoCreateRoles {
		auto := s.autoRoles.groupRoles(ctx, s, t.ID, g.ID)
		for _, id := range auto {
			p.managed = append(p.managed, id)
		}
		if u.GetActive() && !deleted {
			for _, gr := range groups {
				if id, ok := auto[gr.GetId()]; ok {
					p.desired = append(p.desired, id)
				}
			}
		}
	}
	if p.policy != "" {
		p.desired = nil // strip, kick and ban all remove the managed roles
	}
	p.desiredAt = time.Now() // waits from here on (the limiter) count against FreshRoles
	return p, nil
}

// diff returns the managed roles to add and remove, and the full role list
// (current − managed) ∪ desired, which keeps every role scimcord does not
// manage in its original order.
func diff(current, desired, managed []string) (add, rm, target []string) {
	isManaged := map[string]bool{}
	for _, r := range managed {
		isManaged[r] = true
	}
	want := map[string]bool{}
	for _, r := range desired {
		want[r] = true
		isManaged[r] = true // a desired role is managed even if the rules forgot to list it
	}
	has := map[string]bool{}
	for _, r := range current {
		has[r] = true
		if isManaged[r] && !want[r] {
			rm = append(rm, r)
			continue
		}
		target = append(target, r)
	}
	for _, r := range desired {
		if !has[r] && !slices.Contains(add, r) {
			add = append(add, r)
			target = append(target, r)
		}
	}
	sort.Strings(add)
	sort.Strings(rm)
	return add, rm, target
}

// route picks the one call that closes the gap: none, PUT or DELETE for a
// single role, a PATCH for more, or the kick/ban of the policy.
func (s *Service) route(guildID string, p plan) (Route, string) {
	switch {
	case p.policy == tenants.ActionKick:
		return Route{routeMemberKick, guildID}, "kick"
	case p.policy == tenants.ActionBan:
		return Route{routeBanCreate, guildID}, "ban"
	}
	n := len(p.add) + len(p.rm)
	edit := Route{routeMemberEdit, guildID}
	var one Route
	switch {
	case n == 0:
		return Route{}, ""
	case n == 1 && len(p.add) == 1:
		one = Route{routeRoleAdd, guildID}
	case n == 1:
		one = Route{routeRoleRemove, guildID}
	default:
		return edit, "set roles"
	}
	// One role: PUT/DELETE, which touch nothing else. Only when that bucket
	// is busy, the PATCH bucket free and the roles were read just now is the
	// whole list PATCHed instead (both member buckets used when faster; the
	// PATCH is refused at send time if the read has grown older than
	// FreshRoles, see execute).
	if s.limiter.NextFree(one) > 0 && s.limiter.NextFree(edit) == 0 && !p.readAt.IsZero() &&
		time.Since(p.readAt) < s.cfg.FreshRoles/2 {
		return edit, "set roles"
	}
	if len(p.add) == 1 {
		return one, "add role " + p.add[0]
	}
	return one, "remove role " + p.rm[0]
}

func (s *Service) execute(ctx context.Context, guildID string, p plan, op, reason string) error {
	if !p.desiredAt.IsZero() {
		// Sent only while the desired state it was computed from is fresh.
		ctx = withFreshBy(ctx, p.desiredAt.Add(s.cfg.FreshRoles))
	}
	switch {
	case op == "kick":
		return s.dc.Kick(ctx, guildID, p.discordID, reason)
	case op == "ban":
		return s.dc.Ban(ctx, guildID, p.discordID, reason)
	case strings.HasPrefix(op, "add role "):
		return s.dc.AddRole(ctx, guildID, p.discordID, p.add[0], reason)
	case strings.HasPrefix(op, "remove role "):
		return s.dc.RemoveRole(ctx, guildID, p.discordID, p.rm[0], reason)
	default:
		target := p.target
		if target == nil {
			target = []string{}
		}
		// The PATCH replaces the whole list: it goes out only while the read
		// it is based on is fresh (an unmanaged role a human adds between
		// the GET and the PATCH would otherwise be removed). The residual
		// window, GET answer → PATCH sent, is bounded by FreshRoles.
		return s.dc.SetRoles(ctx, guildID, p.discordID, target, reason, p.readAt, s.cfg.FreshRoles)
	}
}

// groupsOf returns the groups a user is currently a member of.
func (s *Service) groupsOf(ctx context.Context, tenant, userID string) ([]*mappingv1.GroupRef, error) {
	keys, err := s.store.ListKeys(ctx, eventbus.UserGroupsFilter(tenant, userID))
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	var out []*mappingv1.GroupRef
	for _, k := range keys {
		rec, err := s.store.Get(ctx, k)
		if errors.Is(err, eventbus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m := rec.Event.GetMembership()
		if m == nil || !m.GetMember() || rec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE {
			continue
		}
		grec, err := s.store.Get(ctx, eventbus.GroupKey(tenant, m.GetGroupId()))
		if errors.Is(err, eventbus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		gr := grec.Event.GetGroup()
		if gr == nil || gr.GetDeleted() || grec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE {
			continue
		}
		out = append(out, &mappingv1.GroupRef{Id: gr.GetId(), ExternalId: gr.GetExternalId(), DisplayName: gr.GetDisplayName()})
	}
	return out, nil
}

// fail records a failed reconcile and returns what the consumer should do.
func (s *Service) fail(ctx context.Context, log interface {
	WarnContext(context.Context, string, ...any)
	ErrorContext(context.Context, string, ...any)
}, st Status, p plan, err error) error {
	var de *DiscordError
	if !errors.As(err, &de) && mappingRefused(err) {
		// Mapping refuses this member (unknown tenant or guild, bad input, a
		// request over its size limit): no retry fixes that until the rules
		// or the record change. Failed + dead letter; Replay after the fix.
		st.State, st.Detail = StateFailed, "mapping refused the request: "+err.Error()
		log.ErrorContext(ctx, "member failed permanently", "op", "resolve roles", "error", err)
		s.metrics.inc("dead_letters")
		if derr := s.dead.put(ctx, DeadLetter{Status: st, Op: "resolve roles"}); derr != nil {
			return fmt.Errorf("applier: record dead letter: %w", derr)
		}
		return s.putStatus(ctx, st)
	}
	if !errors.As(err, &de) {
		// Store or mapping trouble: transient.
		st.State, st.Detail = StateRetrying, err.Error()
		_ = s.putStatus(ctx, st)
		s.metrics.inc("retries")
		return err
	}
	switch de.Class {
	case ClassRateLimited:
		st.State, st.Code, st.Detail = StateRetrying, 429, de.Error()
		_ = s.putStatus(ctx, st)
		s.metrics.inc("rate_limited")
		return eventbus.Retry(err, de.RetryAfter+jitter(de.RetryAfter/10))
	case ClassPermanent:
		if de.Code == codeMissingPermissions || de.Code == codeUnknownRole {
			s.markGuildStale(st.Guild) // a role moved, or was created or deleted
		}
		st.State, st.Code, st.Detail = StateFailed, de.Code, permanentDetail(de)
		log.ErrorContext(ctx, "member failed permanently", "op", de.Op, "status", de.Status, "code", de.Code, "detail", st.Detail)
		s.metrics.inc("dead_letters")
		if derr := s.dead.put(ctx, DeadLetter{Status: st, Op: de.Op, HTTPStatus: de.Status}); derr != nil {
			return fmt.Errorf("applier: record dead letter: %w", derr) // retried: the dead letter must not be lost
		}
		if serr := s.putStatus(ctx, st); serr != nil {
			return serr
		}
		return nil
	default:
		st.State, st.Code, st.Detail = StateRetrying, de.Code, de.Error()
		_ = s.putStatus(ctx, st)
		s.metrics.inc("retries")
		log.WarnContext(ctx, "discord call failed, will retry", "op", de.Op, "status", de.Status, "code", de.Code)
		return err
	}
}

// permanentDetail explains a permanent Discord error to an operator.
func permanentDetail(de *DiscordError) string {
	switch de.Code {
	case codeMissingPermissions:
		return "Discord 50013 Missing Permissions: the bot lacks Manage Roles, or a managed role or the member is at or above the bot's highest role; fix the bot's role position or permissions, then replay"
	case codeUnknownRole:
		return "Discord 10011 Unknown Role: a mapped role id does not exist in the guild; fix the mapping rules, then replay"
	case codeMissingAccess:
		return "Discord 50001 Missing Access: the bot is not in the guild or lacks access (members intent for listing); fix, then replay"
	}
	return fmt.Sprintf("Discord %d %s (HTTP %d) on %s", de.Code, de.Message, de.Status, de.Op)
}

func (s *Service) putStatus(ctx context.Context, st Status) error {
	if s.supersededByPending(ctx, st) {
		return nil // a newer change is queued for this member: its reconcile writes the status
	}
	st.Time = time.Now().UTC()
	if err := s.status.put(ctx, st); err != nil {
		s.log.WarnContext(ctx, "cannot write sync status", "tenant", st.Tenant, "guild", st.Guild, "user", st.User, "error", err)
		return err
	}
	s.admin.applied(st.State)
	switch st.State {
	case StateInSync, StatePendingJoin, StatePendingLink:
		// Back in sync (or nothing to apply): a dead letter of the member
		// is obsolete, whatever made it so (a human, a rules fix, a leave).
		s.clearDeadLetter(ctx, st.Tenant, st.Guild, st.User)
	}
	return nil
}

// clearDeadLetter removes the member's dead letter, if any.
func (s *Service) clearDeadLetter(ctx context.Context, tenant, guild, user string) {
	if s.dead == nil {
		return
	}
	if err := s.dead.clearIfAny(ctx, tenant, guild, user); err != nil {
		s.log.WarnContext(ctx, "cannot clear dead letter", "tenant", tenant, "guild", guild, "user", user, "error", err)
	}
}
