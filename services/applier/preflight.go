package applier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
)

// PreflightReport says whether the bot can manage a guild's managed roles.
type PreflightReport struct {
	Tenant         string   `json:"tenant"`
	Guild          string   `json:"guild"`
	BotUserID      string   `json:"bot_user_id"`
	BotTopPosition int      `json:"bot_top_position"`
	CanManageRoles bool     `json:"can_manage_roles"`
	ManagedRoles   []string `json:"managed_roles"`
	RulesVersion   uint64   `json:"rules_version"`
	// Issues are the problems found, each naming the role and the fix.
	Issues []string `json:"issues,omitempty"`
}

// OK reports a guild without issues.
func (r PreflightReport) OK() bool { return len(r.Issues) == 0 }

const (
	permAdministrator = 1 << 3
	permManageRoles   = 1 << 28
)

// Preflight checks, for every guild of every tenant, the bot's permissions
// and role position against every managed role. It runs at start and when the
// mapping rules change; its findings are logged and returned.
func (s *Service) Preflight(ctx context.Context) ([]PreflightReport, error) {
	botID, err := s.dc.Me(ctx)
	if err != nil {
		return nil, fmt.Errorf("applier: preflight: who am I: %w", err)
	}
	var out []PreflightReport
	for _, t := range s.deps.Tenants.All() {
		for _, g := range t.Guilds {
			rep := PreflightReport{Tenant: t.ID, Guild: g.ID, BotUserID: botID}
			if err := s.preflightGuild(ctx, &rep); err != nil {
				rep.Issues = append(rep.Issues, err.Error())
			}
			s.logPreflight(ctx, rep)
			out = append(out, rep)
		}
	}
	return out, nil
}

func (s *Service) preflightGuild(ctx context.Context, rep *PreflightReport) error {
	byID, top, perms, err := s.loadGuildInfo(ctx, rep.Guild, rep.BotUserID)
	if err != nil {
		return err
	}
	rep.BotTopPosition = top
	res, err := s.deps.Mapping.ResolveRoles(ctx, &mappingv1.ResolveRolesRequest{TenantId: rep.Tenant, GuildId: rep.Guild})
	if err != nil {
		return fmt.Errorf("cannot ask mapping for the managed roles: %w", err)
	}
	rep.ManagedRoles, rep.RulesVersion = res.GetManagedRoleIds(), res.GetRulesVersion()
	rep.CanManageRoles = perms&(permAdministrator|permManageRoles) != 0
	if !rep.CanManageRoles {
		rep.Issues = append(rep.Issues, "the bot lacks the Manage Roles permission (Discord would answer 50013 to every change)")
	}
	managed := append([]string(nil), rep.ManagedRoles...)
	sort.Strings(managed)
	for _, id := range managed {
		r := byID[id]
		switch {
		case r == nil:
			rep.Issues = append(rep.Issues, fmt.Sprintf("managed role %s does not exist in the guild (Discord 10011); fix the mapping rules", id))
		case r.Managed:
			rep.Issues = append(rep.Issues, fmt.Sprintf("managed role %s (%s) belongs to an integration and cannot be assigned; remove it from the mapping rules", id, r.Name))
		case r.Position >= top:
			rep.Issues = append(rep.Issues, fmt.Sprintf("managed role %s (%s) is at position %d, not below the bot's highest role (position %d); move the bot's role above it (Discord 50013)",
				id, r.Name, r.Position, top))
		}
	}
	return nil
}

// loadGuildInfo reads what protects members (the bot's highest role, every
// role's position, the owner) and remembers it; it returns the roles by id,
// the bot's top position and its permissions.
func (s *Service) loadGuildInfo(ctx context.Context, guild, botID string) (map[string]*discordgo.Role, int, int64, error) {
	rep := &PreflightReport{Guild: guild, BotUserID: botID}
	botRoles, err := s.dc.Member(ctx, rep.Guild, rep.BotUserID)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("the bot is not a member of guild %s or cannot read it: %w", rep.Guild, err)
	}
	roles, err := s.dc.Roles(ctx, rep.Guild)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("cannot list the roles of guild %s: %w", rep.Guild, err)
	}
	byID := map[string]*discordgo.Role{}
	for _, r := range roles {
		byID[r.ID] = r
	}
	var perms int64
	if everyone := byID[rep.Guild]; everyone != nil {
		perms |= everyone.Permissions
	}
	top := 0
	for _, id := range botRoles {
		if r := byID[id]; r != nil {
			perms |= r.Permissions
			top = max(top, r.Position)
		}
	}
	owner, err := s.dc.GuildOwner(ctx, rep.Guild)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("cannot read guild %s: %w", rep.Guild, err)
	}
	pos := map[string]int{}
	for _, r := range roles {
		pos[r.ID] = r.Position
	}
	s.mu.Lock()
	if s.guildInfo == nil {
		s.guildInfo = map[string]*guildInfo{}
	}
	s.guildInfo[rep.Guild] = &guildInfo{owner: owner, botTop: top, positions: pos, at: time.Now()}
	s.mu.Unlock()
	return byID, top, perms, nil
}

func (s *Service) logPreflight(ctx context.Context, rep PreflightReport) {
	if rep.OK() {
		s.log.InfoContext(ctx, "preflight ok", "tenant", rep.Tenant, "guild", rep.Guild, "managed_roles", len(rep.ManagedRoles),
			"bot_top_position", rep.BotTopPosition, "rules_version", strconv.FormatUint(rep.RulesVersion, 10))
		return
	}
	for _, is := range rep.Issues {
		s.log.ErrorContext(ctx, "preflight issue", "tenant", rep.Tenant, "guild", rep.Guild, "issue", is)
	}
}

// noteRules runs the preflight again when the mapping's rules version changes.
func (s *Service) noteRules(ctx context.Context, guild string, version uint64) {
	s.mu.Lock()
	if s.rulesSeen == nil {
		s.rulesSeen = map[string]uint64{}
	}
	prev, seen := s.rulesSeen[guild]
	s.rulesSeen[guild] = version
	s.mu.Unlock()
	if seen && prev != version {
		s.log.InfoContext(ctx, "mapping rules changed, running preflight", "guild", guild, "from", prev, "to", version)
		go func() { _, _ = s.Preflight(context.WithoutCancel(ctx)) }()
	}
}

// guildInfo is what the applier remembers of a guild to protect members it
// must never change: the owner, and members whose highest role is at or
// above the bot's.
type guildInfo struct {
	owner     string
	botTop    int
	positions map[string]int
	at        time.Time // when it was read
	stale     bool      // a 50013/10011 said positions or roles changed
}

// guildRefreshMin is how often, at most, a guild's roles are read again
// because a member holds a role scimcord does not know or Discord answered
// 50013/10011 (a cache of the role positions, briefly).
const guildRefreshMin = 2 * time.Second

// refreshGuildInfo reads a guild's roles, the bot's position and the owner
// again, unless that was done within guildRefreshMin (and nothing marked it
// stale since). One refresh per guild at a time; the others wait for it.
func (s *Service) refreshGuildInfo(ctx context.Context, guild string) error {
	s.mu.Lock()
	if s.refreshing == nil {
		s.refreshing = map[string]*sync.Mutex{}
	}
	l := s.refreshing[guild]
	if l == nil {
		l = &sync.Mutex{}
		s.refreshing[guild] = l
	}
	s.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	gi := s.guildInfo[guild]
	fresh := gi != nil && !gi.stale && time.Since(gi.at) < guildRefreshMin
	botID := s.botID
	s.mu.Unlock()
	if fresh {
		return nil
	}
	if botID == "" {
		id, err := s.dc.Me(ctx)
		if err != nil {
			return fmt.Errorf("applier: refresh guild %s: who am I: %w", guild, err)
		}
		s.mu.Lock()
		s.botID = id
		s.mu.Unlock()
		botID = id
	}
	if _, _, _, err := s.loadGuildInfo(ctx, guild, botID); err != nil {
		return fmt.Errorf("applier: refresh guild %s: %w", guild, err)
	}
	s.metrics.inc("guild_refreshes")
	return nil
}

// markGuildStale makes the next protection check read the guild's roles
// again (after a 50013 or 10011: a role moved, or was created or deleted).
func (s *Service) markGuildStale(guild string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gi := s.guildInfo[guild]; gi != nil {
		gi.stale = true
	}
}

// guildRefreshLoop reads every guild's roles again every interval (low
// priority), so a role moved or created above the bot is known without a
// failing call.
func (s *Service) guildRefreshLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen := map[string]bool{}
		for _, tn := range s.deps.Tenants.All() {
			for _, g := range tn.Guilds {
				if seen[g.ID] {
					continue
				}
				seen[g.ID] = true
				s.markGuildStale(g.ID)
				if err := s.refreshGuildInfo(lowPriority(ctx, nil), g.ID); err != nil && ctx.Err() == nil {
					s.log.WarnContext(ctx, "cannot refresh the guild's roles", "guild", g.ID, "error", err)
				}
			}
		}
	}
}

// protected says why a member must not be changed ("" = it may be); a guild
// whose owner and role positions cannot be read counts as protected.
func (s *Service) protected(ctx context.Context, guild, discordID string, roles []string) string {
	why, err := s.protection(ctx, guild, discordID, roles)
	if err != nil {
		return err.Error()
	}
	return why
}

// errGuildUnknown means the guild's owner and role positions are not known
// yet; changes wait (fail-safe) and are retried.
var errGuildUnknown = errors.New("applier: the guild's owner and role positions cannot be read yet")

// protection says why a member must not be changed ("" = it may be). An
// error means it cannot tell yet: the caller retries rather than risk it.
func (s *Service) protection(ctx context.Context, guild, discordID string, roles []string) (string, error) {
	s.mu.Lock()
	gi := s.guildInfo[guild]
	s.mu.Unlock()
	if gi == nil {
		s.mu.Lock()
		recent := time.Since(s.infoTried[guild]) < 5*time.Second
		if s.infoTried == nil {
			s.infoTried = map[string]time.Time{}
		}
		s.mu.Unlock()
		if recent {
			// The last attempt failed just now; do not add calls to every reconcile.
			return "", errGuildUnknown
		}
		rep := PreflightReport{Guild: guild}
		id, err := s.dc.Me(ctx)
		if err == nil {
			rep.BotUserID = id
			for _, t := range s.deps.Tenants.All() {
				for _, g := range t.Guilds {
					if g.ID == guild {
						rep.Tenant = t.ID
					}
				}
			}
			err = s.preflightGuild(ctx, &rep)
		}
		s.mu.Lock()
		gi = s.guildInfo[guild]
		if gi == nil {
			s.infoTried[guild] = time.Now()
		}
		s.mu.Unlock()
		if gi == nil {
			if err == nil {
				err = errGuildUnknown
			}
			return "", fmt.Errorf("%w: %w", errGuildUnknown, err)
		}
	}
	if gi.stale {
		// A 50013/10011 said the roles changed: read them again (at most
		// every guildRefreshMin); on failure keep the last known ones.
		if err := s.refreshGuildInfo(ctx, guild); err == nil {
			s.mu.Lock()
			gi = s.guildInfo[guild]
			s.mu.Unlock()
		}
	}
	why, unknown := gi.protects(discordID, roles)
	if why != "" || unknown == "" {
		return why, nil
	}
	// A role scimcord has not seen (created after the last read): read the
	// roles again; a role still unknown after a read made now counts as
	// above the bot (fail-safe). If the roles were read just before (the
	// refresh is rate-limited), the member is retried shortly instead.
	asked := time.Now()
	if err := s.refreshGuildInfo(ctx, guild); err != nil {
		return "", fmt.Errorf("%w: role %s of the member is unknown: %w", errGuildUnknown, unknown, err)
	}
	s.mu.Lock()
	gi = s.guildInfo[guild]
	s.mu.Unlock()
	why, unknown = gi.protects(discordID, roles)
	switch {
	case why != "" || unknown == "":
		return why, nil
	case gi.at.Before(asked):
		return "", eventbus.Retry(fmt.Errorf("%w: role %s of the member is not known yet", errGuildUnknown, unknown), jitter(guildRefreshMin))
	}
	return fmt.Sprintf("the member has role %s, which is not in the guild's role list: it counts as above the bot; scimcord never changes a member whose roles it cannot place below the bot", unknown), nil
}

// protects says why a member must not be changed, and names a role of the
// member whose position is unknown.
func (gi *guildInfo) protects(discordID string, roles []string) (why, unknown string) {
	if discordID == gi.owner {
		return "the guild owner is never changed by scimcord", ""
	}
	for _, r := range roles {
		p, ok := gi.positions[r]
		if !ok {
			unknown = r
			continue
		}
		if p >= gi.botTop {
			return fmt.Sprintf("the member has role %s at or above the bot's highest role; scimcord never changes such members", r), ""
		}
	}
	return "", unknown
}
