package applier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/bwmarrin/discordgo"

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
	res, err := s.deps.Mapping.ResolveRoles(ctx, &mappingv1.ResolveRolesRequest{TenantId: rep.Tenant, GuildId: rep.Guild})
	if err != nil {
		return fmt.Errorf("cannot ask mapping for the managed roles: %w", err)
	}
	rep.ManagedRoles, rep.RulesVersion = res.GetManagedRoleIds(), res.GetRulesVersion()
	botRoles, err := s.dc.Member(ctx, rep.Guild, rep.BotUserID)
	if err != nil {
		return fmt.Errorf("the bot is not a member of guild %s or cannot read it: %w", rep.Guild, err)
	}
	roles, err := s.dc.Roles(ctx, rep.Guild)
	if err != nil {
		return fmt.Errorf("cannot list the roles of guild %s: %w", rep.Guild, err)
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
	rep.BotTopPosition = top
	owner, err := s.dc.GuildOwner(ctx, rep.Guild)
	if err != nil {
		return fmt.Errorf("cannot read guild %s: %w", rep.Guild, err)
	}
	pos := map[string]int{}
	for _, r := range roles {
		pos[r.ID] = r.Position
	}
	s.mu.Lock()
	if s.guildInfo == nil {
		s.guildInfo = map[string]*guildInfo{}
	}
	s.guildInfo[rep.Guild] = &guildInfo{owner: owner, botTop: top, positions: pos}
	s.mu.Unlock()
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
	if discordID == gi.owner {
		return "the guild owner is never changed by scimcord", nil
	}
	for _, r := range roles {
		if p, ok := gi.positions[r]; ok && p >= gi.botTop {
			return fmt.Sprintf("the member has role %s at or above the bot's highest role; scimcord never changes such members", r), nil
		}
	}
	return "", nil
}
