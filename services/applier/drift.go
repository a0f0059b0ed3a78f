package applier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// PlannedChange is one member change found by drift repair.
type PlannedChange struct {
	// User is the SCIM user id; "" for a member no SCIM user is linked to
	// (such a member may hold no managed role).
	User          string   `json:"user,omitempty"`
	DiscordUserID string   `json:"discord_user_id"`
	Op            string   `json:"op"`
	Add           []string `json:"add,omitempty"`
	Remove        []string `json:"remove,omitempty"`
	Done          bool     `json:"done"`
	Error         string   `json:"error,omitempty"`
}

// RepairReport is the outcome of one full reconcile of a guild.
type RepairReport struct {
	Tenant   string          `json:"tenant"`
	Guild    string          `json:"guild"`
	DryRun   bool            `json:"dry_run"`
	Members  int             `json:"members"`
	Pages    int             `json:"pages"`
	Changes  []PlannedChange `json:"changes"`
	Started  time.Time       `json:"started"`
	Duration time.Duration   `json:"duration"`
}

// membersPage is the page size of the member listing (Discord's maximum).
const membersPage = 1000

// Repair is drift repair: it lists every member of the guild (paging; the bot
// needs the members intent), compares each one's managed roles with the
// desired state, and fixes the differences — roles added or removed by hand
// in Discord. With dryRun it only reports the calls it would make.
//
// Repair runs at low priority: while a live change of the guild is being
// applied, none of its Discord calls starts (priority.go), so live changes
// go first, and it waits for the rate limit instead of giving up.
func (s *Service) Repair(ctx context.Context, tenantID, guildID string, dryRun bool) (RepairReport, error) {
	ctx = lowPriority(ctx, nil)
	rep := RepairReport{Tenant: tenantID, Guild: guildID, DryRun: dryRun, Started: time.Now().UTC()}
	if err := s.open(ctx); err != nil {
		return rep, err
	}
	t, ok := s.deps.Tenants.Get(tenantID)
	if !ok {
		return rep, fmt.Errorf("applier: repair: unknown tenant %q", tenantID)
	}
	var g tenants.Guild
	for _, x := range t.Guilds {
		if x.ID == guildID {
			g = x
		}
	}
	if g.ID == "" {
		return rep, fmt.Errorf("applier: repair: tenant %q does not drive guild %q", tenantID, guildID)
	}
	// Refresh what protects the owner and members above the bot.
	if id, err := s.dc.Me(ctx); err == nil {
		pre := PreflightReport{Tenant: tenantID, Guild: guildID, BotUserID: id}
		if err := s.preflightGuild(ctx, &pre); err == nil {
			s.logPreflight(ctx, pre)
		}
	}
	// Which SCIM user is each Discord user?
	keys, err := s.store.ListKeys(ctx, tenantID+".u.*")
	if err != nil {
		return rep, err
	}
	byDiscord := map[string]string{}
	for _, k := range keys {
		rec, err := s.store.Get(ctx, k)
		if err != nil {
			continue
		}
		if u := rec.Event.GetUser(); u != nil && u.GetDiscordUserId() != "" {
			byDiscord[u.GetDiscordUserId()] = u.GetId()
		}
	}
	// The managed set, for members no SCIM user is linked to.
	res, err := s.deps.Mapping.ResolveRoles(ctx, &mappingv1.ResolveRolesRequest{TenantId: tenantID, GuildId: guildID})
	if err != nil {
		return rep, fmt.Errorf("applier: repair: managed roles of %s: %w", guildID, err)
	}
	managed := res.GetManagedRoleIds()

	after := "0"
	for {
		ms, err := s.listPage(ctx, guildID, after)
		if err != nil {
			return rep, err
		}
		rep.Pages++
		for _, m := range ms {
			if m.User == nil {
				continue
			}
			rep.Members++
			after = m.User.ID
			if m.User.Bot {
				continue
			}
			uid, linked := byDiscord[m.User.ID]
			var ch PlannedChange
			if !linked {
				add, rm, _ := diff(m.Roles, nil, managed)
				if len(add)+len(rm) == 0 || s.protected(ctx, guildID, m.User.ID, m.Roles) != "" {
					continue
				}
				ch = PlannedChange{DiscordUserID: m.User.ID, Op: opFor(add, rm), Add: add, Remove: rm}
				if !dryRun {
					done, err := s.repairUnlinked(ctx, g, m.User.ID, managed, &ch)
					switch {
					case err != nil:
						ch.Error = err.Error()
					case !done:
						ch.Error = "nothing done: the member left the guild or needs no change any more"
					default:
						ch.Done = true
					}
				}
			} else {
				roles := m.Roles
				p, err := s.planWith(ctx, t, g, uid, &roles)
				if err != nil {
					if errors.Is(err, eventbus.ErrNotFound) {
						continue
					}
					if ctx.Err() != nil {
						return rep, err
					}
					// One member's trouble (mapping refusing it, say) does
					// not stop the guild's repair: recorded, and on.
					rep.Changes = append(rep.Changes, PlannedChange{User: uid, DiscordUserID: m.User.ID, Op: "none",
						Error: "cannot plan: " + err.Error()})
					continue
				}
				_, op := s.route(guildID, p)
				if op == "" || p.discordID == "" {
					continue
				}
				ch = PlannedChange{User: uid, DiscordUserID: m.User.ID, Op: op, Add: p.add, Remove: p.rm}
				if why := s.protected(ctx, guildID, m.User.ID, m.Roles); why != "" {
					ch.Error = "not changed: " + why // the owner, a member above the bot
					rep.Changes = append(rep.Changes, ch)
					continue
				}
				if !dryRun {
					// The live path re-reads the member and is coalesced with
					// events; drift waits out the rate limit rather than failing.
					// The report says how the member ended, not just that the
					// reconcile returned.
					ch.Done, ch.Error = s.repairOutcome(ctx, t.ID, guildID, uid, s.reconcileWaiting(ctx, t, g, uid))
				}
			}
			rep.Changes = append(rep.Changes, ch)
		}
		if len(ms) < s.pageSize {
			break
		}
	}
	s.brake.setSize(guildID, rep.Members)
	rep.Duration = time.Since(rep.Started)
	s.metrics.inc("drift_runs")
	for _, c := range rep.Changes {
		if c.Done {
			s.metrics.inc("drift_fixes")
		}
	}
	return rep, nil
}

// repairOutcome is what drift repair reports for a linked member it
// reconciled: done only when the member ended in sync; otherwise the state
// it is in (failed and dead-lettered, held by the brake, pending_join, …).
func (s *Service) repairOutcome(ctx context.Context, tenant, guild, user string, err error) (bool, string) {
	if err != nil {
		return false, err.Error()
	}
	st, serr := s.status.get(ctx, tenant, guild, user)
	if serr != nil {
		return false, "outcome unknown: " + serr.Error()
	}
	if st.State == StateInSync {
		return true, ""
	}
	if st.Detail == "" {
		return false, string(st.State)
	}
	return false, string(st.State) + ": " + st.Detail
}

// reconcileWaiting reconciles a member for background work: a rate-limit
// delay is waited out (up to a few times) instead of reported as a failure.
func (s *Service) reconcileWaiting(ctx context.Context, t *tenants.Tenant, g tenants.Guild, userID string) error {
	for attempt := 0; ; attempt++ {
		err := s.reconcile(ctx, t, g, userID)
		d, ok := eventbus.RetryDelay(err)
		if err == nil || !ok || attempt >= 5 {
			return err
		}
		if err := sleepCtx(ctx, d, nil); err != nil {
			return err
		}
	}
}

// repairUnlinked removes the managed roles of a member no SCIM user is linked
// to. The listing can be seconds old, so the member is read again and the
// change computed from that fresh read (a PATCH is only sent from a fresh
// read); the brake and the protection of owner and members above the bot
// apply as on the live path.
func (s *Service) repairUnlinked(ctx context.Context, g tenants.Guild, discordID string, managed []string, ch *PlannedChange) (done bool, err error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.dc.Member(ctx, g.ID, discordID)
		readAt := time.Now()
		var de *DiscordError
		if errors.As(err, &de) && de.Class == ClassUnknownMember {
			return false, nil // left meanwhile: nothing to remove
		}
		if err != nil {
			return false, err
		}
		add, rm, target := diff(cur, nil, managed)
		ch.Add, ch.Remove, ch.Op = add, rm, opFor(add, rm)
		if len(add)+len(rm) == 0 {
			return false, nil
		}
		if why := s.protected(ctx, g.ID, discordID, cur); why != "" {
			return false, errors.New(why)
		}
		if _, err := s.brake.admit(g.ID, discordID, time.Now()); err != nil {
			return false, err
		}
		p := plan{discordID: discordID, add: add, rm: rm, target: target, inGuild: true, readAt: readAt}
		reason := fmt.Sprintf("%s: drift repair, %s on an unlinked member", s.cfg.AuditReason, ch.Op)
		err = s.execute(ctx, g.ID, p, ch.Op, reason)
		if errors.Is(err, errStaleRoles) && attempt < 5 {
			continue // waited too long for the PATCH: read again
		}
		if errors.As(err, &de) && de.Class == ClassRateLimited && attempt < 5 {
			if err := sleepCtx(ctx, de.RetryAfter, nil); err != nil {
				return false, err
			}
			continue
		}
		return err == nil, err
	}
}

// listPage lists one page of members, waiting for the bucket (drift repair is
// low priority: it waits rather than failing).
func (s *Service) listPage(ctx context.Context, guildID, after string) ([]*memberEntry, error) {
	for {
		ms, err := s.dc.Members(ctx, guildID, after, s.pageSize)
		if err == nil {
			out := make([]*memberEntry, 0, len(ms))
			for _, m := range ms {
				e := &memberEntry{Roles: m.Roles}
				if m.User != nil {
					e.User = &memberUser{ID: m.User.ID, Bot: m.User.Bot}
				}
				out = append(out, e)
			}
			return out, nil
		}
		var de *DiscordError
		if errors.As(err, &de) && de.Class == ClassRateLimited {
			if err := sleepCtx(ctx, de.RetryAfter, nil); err != nil {
				return nil, err
			}
			continue
		}
		return nil, fmt.Errorf("applier: list members of %s: %w", guildID, err)
	}
}

type memberUser struct {
	ID  string
	Bot bool
}

type memberEntry struct {
	User  *memberUser
	Roles []string
}

func opFor(add, rm []string) string {
	switch {
	case len(add)+len(rm) >= 2:
		return "set roles"
	case len(add) == 1:
		return "add role " + add[0]
	default:
		return "remove role " + rm[0]
	}
}

// driftLoop runs Repair on every guild every interval until ctx ends.
func (s *Service) driftLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, tn := range s.deps.Tenants.All() {
			for _, g := range tn.Guilds {
				rep, err := s.Repair(ctx, tn.ID, g.ID, s.cfg.DriftDryRun)
				s.admin.noteRepair(rep, err)
				if err != nil {
					s.log.WarnContext(ctx, "drift repair failed", "tenant", tn.ID, "guild", g.ID, "error", err)
					continue
				}
				s.log.InfoContext(ctx, "drift repair done", "tenant", tn.ID, "guild", g.ID, "dry_run", rep.DryRun,
					"members", rep.Members, "changes", len(rep.Changes), "duration", rep.Duration)
				for _, c := range rep.Changes {
					s.log.InfoContext(ctx, "drift", "tenant", tn.ID, "guild", g.ID, "user", c.User, "discord_user", c.DiscordUserID,
						"op", c.Op, "add", c.Add, "remove", c.Remove, "done", c.Done, "error", c.Error)
				}
			}
		}
	}
}
