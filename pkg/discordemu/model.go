package discordemu

import (
	"sort"
	"time"
)

// world is the whole persisted emulator state. It is guarded by Emulator.mu.
type world struct {
	Apps    map[string]*appState   `json:"apps"`
	Users   map[string]*userState  `json:"users"`
	Guilds  map[string]*guildState `json:"guilds"`
	Tokens  map[string]*tokenState `json:"tokens"`  // access token -> grant
	Refresh map[string]string      `json:"refresh"` // refresh token -> access token
	Codes   map[string]*codeState  `json:"codes"`
	Snow    snowState              `json:"snow"`
	Extra   map[string]string      `json:"extra,omitempty"`
}

func newWorld() *world {
	return &world{
		Apps:    map[string]*appState{},
		Users:   map[string]*userState{},
		Guilds:  map[string]*guildState{},
		Tokens:  map[string]*tokenState{},
		Refresh: map[string]string{},
		Codes:   map[string]*codeState{},
	}
}

type appState struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	ClientSecret  string   `json:"client_secret"`
	RedirectURIs  []string `json:"redirect_uris"`
	MembersIntent bool     `json:"members_intent"`
	BotUserID     string   `json:"bot_user_id"`
	BotToken      string   `json:"bot_token"`
}

type userState struct {
	ID         string  `json:"id"`
	Username   string  `json:"username"`
	GlobalName *string `json:"global_name"`
	Email      *string `json:"email"`
	Verified   bool    `json:"verified"`
	MaxGuilds  int     `json:"max_guilds"`
	Bot        bool    `json:"bot"`
}

type roleTags struct {
	BotID             string `json:"bot_id,omitempty"`
	IntegrationID     string `json:"integration_id,omitempty"`
	PremiumSubscriber bool   `json:"premium_subscriber,omitempty"`
}

type roleState struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Permissions  uint64    `json:"permissions,string"`
	Position     int       `json:"position"`
	Color        int       `json:"color"`
	Hoist        bool      `json:"hoist"`
	Managed      bool      `json:"managed"`
	Mentionable  bool      `json:"mentionable"`
	Icon         *string   `json:"icon"`
	UnicodeEmoji *string   `json:"unicode_emoji"`
	Tags         *roleTags `json:"tags,omitempty"`
}

type memberState struct {
	UserID                     string     `json:"user_id"`
	Roles                      []string   `json:"roles"`
	Nick                       *string    `json:"nick"`
	JoinedAt                   time.Time  `json:"joined_at"`
	PremiumSince               *time.Time `json:"premium_since"`
	Pending                    bool       `json:"pending"`
	CommunicationDisabledUntil *time.Time `json:"communication_disabled_until"`
	Flags                      int        `json:"flags"`
}

func (m *memberState) hasRole(id string) bool {
	for _, r := range m.Roles {
		if r == id {
			return true
		}
	}
	return false
}

type banState struct {
	UserID string  `json:"user_id"`
	Reason *string `json:"reason"`
}

type guildState struct {
	ID       string                  `json:"id"`
	Name     string                  `json:"name"`
	OwnerID  string                  `json:"owner_id"`
	Features []string                `json:"features"`
	Roles    map[string]*roleState   `json:"roles"`
	Members  map[string]*memberState `json:"members"`
	Bans     map[string]*banState    `json:"bans"`
	Audit    []AuditEntry            `json:"audit_log"`
	// NonmemberBans holds the times of recent non-member bans (strict.nonmember_ban_limit).
	NonmemberBans []time.Time `json:"nonmember_bans,omitempty"`
}

func (g *guildState) hasFeature(f string) bool {
	for _, x := range g.Features {
		if x == f {
			return true
		}
	}
	return false
}

// sortedRoles returns the roles ordered by (position, id), @everyone first.
func (g *guildState) sortedRoles() []*roleState {
	out := make([]*roleState, 0, len(g.Roles))
	for _, r := range g.Roles {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID == g.ID {
			return true
		}
		if out[j].ID == g.ID {
			return false
		}
		if out[i].Position != out[j].Position {
			return out[i].Position < out[j].Position
		}
		return snowLess(out[i].ID, out[j].ID)
	})
	return out
}

// renumber assigns contiguous positions following the given bottom→top order of
// the non-@everyone roles.
func (g *guildState) renumber(order []*roleState) {
	if ev := g.Roles[g.ID]; ev != nil {
		ev.Position = 0
	}
	p := 1
	for _, r := range order {
		if r.ID == g.ID {
			continue
		}
		r.Position = p
		p++
	}
}

// nonEveryone returns the non-@everyone roles bottom→top.
func (g *guildState) nonEveryone() []*roleState {
	all := g.sortedRoles()
	out := make([]*roleState, 0, len(all))
	for _, r := range all {
		if r.ID != g.ID {
			out = append(out, r)
		}
	}
	return out
}

type tokenState struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	AppID        string    `json:"app_id"`
	UserID       string    `json:"user_id"`
	Scopes       []string  `json:"scopes"`
	ExpiresAt    time.Time `json:"expires_at"`
	Revoked      bool      `json:"revoked"`
}

func (t *tokenState) hasScope(s string) bool {
	for _, x := range t.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

type codeState struct {
	Code          string    `json:"code"`
	AppID         string    `json:"app_id"`
	UserID        string    `json:"user_id"`
	Scopes        []string  `json:"scopes"`
	RedirectURI   string    `json:"redirect_uri"`
	IssuedAt      time.Time `json:"issued_at"`
	Used          bool      `json:"used"`
	Challenge     string    `json:"challenge,omitempty"`
	ChallengeMeth string    `json:"challenge_method,omitempty"`
}

// AuditEntry is one audit-log entry (§14).
type AuditEntry struct {
	ID         string        `json:"id"`
	GuildID    string        `json:"guild_id"`
	UserID     string        `json:"user_id"`
	TargetID   string        `json:"target_id"`
	ActionType int           `json:"action_type"`
	Changes    []AuditChange `json:"changes"`
	Reason     *string       `json:"reason"`
}

// AuditChange is one change of an audit entry.
type AuditChange struct {
	Key      string `json:"key"`
	OldValue any    `json:"old_value,omitempty"`
	NewValue any    `json:"new_value,omitempty"`
}

// Audit action types (§14).
const (
	AuditMemberKick       = 20
	AuditMemberBanAdd     = 22
	AuditMemberBanRemove  = 23
	AuditMemberUpdate     = 24
	AuditMemberRoleUpdate = 25
	AuditRoleCreate       = 30
	AuditRoleUpdate       = 31
	AuditRoleDelete       = 32
)
