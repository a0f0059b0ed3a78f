package discordemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// ApplicationSeed is the body of POST /_emu/applications and a fixture entry.
type ApplicationSeed struct {
	ID            string   `json:"id,omitempty" yaml:"id"`
	Name          string   `json:"name" yaml:"name"`
	ClientSecret  string   `json:"client_secret,omitempty" yaml:"client_secret"`
	RedirectURIs  []string `json:"redirect_uris,omitempty" yaml:"redirect_uris"`
	MembersIntent bool     `json:"members_intent" yaml:"members_intent"`
	Bot           BotSeed  `json:"bot" yaml:"bot"`
}

// BotSeed describes an application's bot user.
type BotSeed struct {
	ID       string `json:"id,omitempty" yaml:"id"`
	Username string `json:"username,omitempty" yaml:"username"`
	Token    string `json:"token,omitempty" yaml:"token"`
}

// ApplicationInfo is the answer of POST /_emu/applications.
type ApplicationInfo struct {
	ApplicationID string `json:"application_id"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	BotUserID     string `json:"bot_user_id"`
	BotToken      string `json:"bot_token"`
}

// UserSeed is the body of POST /_emu/users and a fixture entry.
type UserSeed struct {
	ID         string  `json:"id,omitempty" yaml:"id"`
	Username   string  `json:"username" yaml:"username"`
	GlobalName *string `json:"global_name,omitempty" yaml:"global_name"`
	Email      *string `json:"email,omitempty" yaml:"email"`
	Verified   bool    `json:"verified,omitempty" yaml:"verified"`
	MaxGuilds  int     `json:"max_guilds,omitempty" yaml:"max_guilds"`
}

// RoleSeed is a role in a guild seed, listed bottom→top.
type RoleSeed struct {
	Key          string      `json:"key,omitempty" yaml:"key"`
	ID           string      `json:"id,omitempty" yaml:"id"`
	Name         string      `json:"name" yaml:"name"`
	Permissions  Permissions `json:"permissions" yaml:"permissions"`
	Color        int         `json:"color,omitempty" yaml:"color"`
	Hoist        bool        `json:"hoist,omitempty" yaml:"hoist"`
	Mentionable  bool        `json:"mentionable,omitempty" yaml:"mentionable"`
	Managed      bool        `json:"managed,omitempty" yaml:"managed"`
	Tags         *RoleTags   `json:"tags,omitempty" yaml:"tags"`
	Position     *int        `json:"position,omitempty" yaml:"position"` // direct admin edits only
	UnicodeEmoji *string     `json:"unicode_emoji,omitempty" yaml:"unicode_emoji"`
}

// BotPosition is "top", "bottom" or an index in the bottom→top role list.
type BotPosition struct {
	Top, Bottom bool
	Index       int
	set         bool
}

// MarshalJSON encodes the position.
func (p BotPosition) MarshalJSON() ([]byte, error) {
	switch {
	case p.Top:
		return []byte(`"top"`), nil
	case p.Bottom:
		return []byte(`"bottom"`), nil
	case !p.set:
		return []byte(`null`), nil
	}
	return []byte(strconv.Itoa(p.Index)), nil
}

// UnmarshalJSON decodes "top", "bottom" or an integer.
func (p *BotPosition) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return p.set2(v)
}

// UnmarshalYAML decodes "top", "bottom" or an integer.
func (p *BotPosition) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	return p.set2(v)
}

func (p *BotPosition) set2(v any) error {
	*p = BotPosition{set: true}
	switch x := v.(type) {
	case nil:
		p.set = false
	case string:
		switch x {
		case "top":
			p.Top = true
		case "bottom":
			p.Bottom = true
		default:
			n, err := strconv.Atoi(x)
			if err != nil {
				return fmt.Errorf("bot position %q: want top, bottom or an integer", x)
			}
			p.Index = n
		}
	case float64:
		p.Index = int(x)
	case int:
		p.Index = x
	default:
		return fmt.Errorf("bot position: unsupported %T", v)
	}
	return nil
}

// GuildBotSeed places an application's bot (and its managed role) in a guild.
type GuildBotSeed struct {
	ApplicationID string      `json:"application_id" yaml:"application_id"`
	Permissions   Permissions `json:"permissions" yaml:"permissions"`
	Position      BotPosition `json:"position" yaml:"position"`
	RoleID        string      `json:"role_id,omitempty" yaml:"role_id"`
	RoleName      string      `json:"role_name,omitempty" yaml:"role_name"`
}

// MemberSeed is a member in a guild seed, and the body of POST /_emu/guilds/{g}/members.
type MemberSeed struct {
	UserID   string   `json:"user_id" yaml:"user_id"`
	Roles    []string `json:"roles,omitempty" yaml:"roles"`
	Nick     *string  `json:"nick,omitempty" yaml:"nick"`
	JoinedAt string   `json:"joined_at,omitempty" yaml:"joined_at"`
	Pending  bool     `json:"pending,omitempty" yaml:"pending"`
}

// BanSeed is a ban in a guild seed.
type BanSeed struct {
	UserID string  `json:"user_id" yaml:"user_id"`
	Reason *string `json:"reason,omitempty" yaml:"reason"`
}

// GuildSeed is the body of POST /_emu/guilds and a fixture entry.
type GuildSeed struct {
	ID                  string         `json:"id,omitempty" yaml:"id"`
	Name                string         `json:"name" yaml:"name"`
	OwnerID             string         `json:"owner_id" yaml:"owner_id"`
	Features            []string       `json:"features,omitempty" yaml:"features"`
	EveryonePermissions Permissions    `json:"everyone_permissions" yaml:"everyone_permissions"`
	Roles               []RoleSeed     `json:"roles,omitempty" yaml:"roles"`
	Bots                []GuildBotSeed `json:"bots,omitempty" yaml:"bots"`
	Members             []MemberSeed   `json:"members,omitempty" yaml:"members"`
	Bans                []BanSeed      `json:"bans,omitempty" yaml:"bans"`
}

// GuildSeedResult is the answer of POST /_emu/guilds.
type GuildSeedResult struct {
	Guild      Guild             `json:"guild"`
	RoleIDs    map[string]string `json:"role_ids"`
	BotRoleIDs map[string]string `json:"bot_role_ids"`
}

func (e *Emulator) createAppLocked(s ApplicationSeed) (ApplicationInfo, error) {
	id := s.ID
	if id == "" {
		id = e.newIDLocked()
	} else if !isSnowflake(id) {
		return ApplicationInfo{}, fmt.Errorf("application id %q is not a snowflake", id)
	}
	if _, ok := e.w.Apps[id]; ok {
		return ApplicationInfo{}, fmt.Errorf("application %s already exists", id)
	}
	botID := s.Bot.ID
	if botID == "" {
		botID = e.newIDLocked()
	}
	if u := e.w.Users[botID]; u != nil && !u.Bot {
		return ApplicationInfo{}, fmt.Errorf("bot user id %s is already a user", botID)
	}
	name := s.Name
	if name == "" {
		name = "app-" + id
	}
	uname := s.Bot.Username
	if uname == "" {
		uname = name
	}
	secret := s.ClientSecret
	if secret == "" {
		secret = e.randString(32)
	}
	tok := s.Bot.Token
	if tok == "" {
		tok = "emu." + e.randString(24) + "." + e.randString(6) + "." + e.randString(27)
	}
	for _, a := range e.w.Apps {
		if a.BotToken == tok {
			return ApplicationInfo{}, fmt.Errorf("bot token already used by application %s", a.ID)
		}
	}
	e.w.Apps[id] = &appState{ID: id, Name: name, ClientSecret: secret, RedirectURIs: append([]string{}, s.RedirectURIs...),
		MembersIntent: s.MembersIntent, BotUserID: botID, BotToken: tok}
	e.w.Users[botID] = &userState{ID: botID, Username: uname, Bot: true, Verified: true, MaxGuilds: 100}
	return ApplicationInfo{ApplicationID: id, ClientID: id, ClientSecret: secret, BotUserID: botID, BotToken: tok}, nil
}

func (e *Emulator) createUserLocked(s UserSeed) (*userState, error) {
	id := s.ID
	if id == "" {
		id = e.newIDLocked()
	} else if !isSnowflake(id) {
		return nil, fmt.Errorf("user id %q is not a snowflake", id)
	}
	if s.Username == "" {
		s.Username = "user" + id
	}
	mg := s.MaxGuilds
	if mg <= 0 {
		mg = 100
	}
	u := &userState{ID: id, Username: s.Username, GlobalName: s.GlobalName, Email: s.Email, Verified: s.Verified, MaxGuilds: mg}
	e.w.Users[id] = u
	return u, nil
}

func (e *Emulator) createGuildLocked(s GuildSeed) (GuildSeedResult, error) {
	id := s.ID
	if id == "" {
		id = e.newIDLocked()
	} else if !isSnowflake(id) {
		return GuildSeedResult{}, fmt.Errorf("guild id %q is not a snowflake", id)
	}
	if _, ok := e.w.Guilds[id]; ok {
		return GuildSeedResult{}, fmt.Errorf("guild %s already exists", id)
	}
	if s.OwnerID == "" || !isSnowflake(s.OwnerID) {
		return GuildSeedResult{}, fmt.Errorf("guild %s: owner_id %q is required and must be a snowflake", id, s.OwnerID)
	}
	if e.w.Users[s.OwnerID] == nil {
		e.w.Users[s.OwnerID] = &userState{ID: s.OwnerID, Username: "owner" + s.OwnerID, MaxGuilds: 100}
	}
	g := &guildState{ID: id, Name: s.Name, OwnerID: s.OwnerID, Features: append([]string{}, s.Features...),
		Roles: map[string]*roleState{}, Members: map[string]*memberState{}, Bans: map[string]*banState{}}
	if g.Name == "" {
		g.Name = "guild " + id
	}
	g.Roles[id] = &roleState{ID: id, Name: "@everyone", Permissions: uint64(s.EveryonePermissions)}
	res := GuildSeedResult{RoleIDs: map[string]string{}, BotRoleIDs: map[string]string{}}
	order := []*roleState{}
	keys := map[string]string{}
	for _, rs := range s.Roles {
		r, err := e.roleFromSeedLocked(g, rs)
		if err != nil {
			return GuildSeedResult{}, err
		}
		order = append(order, r)
		g.Roles[r.ID] = r
		if rs.Key != "" {
			keys[rs.Key] = r.ID
			res.RoleIDs[rs.Key] = r.ID
		}
	}
	for _, b := range s.Bots {
		app := e.w.Apps[b.ApplicationID]
		if app == nil {
			return GuildSeedResult{}, fmt.Errorf("guild %s: unknown bot application %s", id, b.ApplicationID)
		}
		rid := b.RoleID
		if rid == "" {
			rid = e.newIDLocked()
		}
		name := b.RoleName
		if name == "" {
			name = e.w.Users[app.BotUserID].Username
		}
		r := &roleState{ID: rid, Name: name, Permissions: uint64(b.Permissions), Managed: true, Tags: &roleTags{BotID: app.BotUserID}}
		idx := len(order) - 1 // default: just below the top
		if idx < 0 {
			idx = 0
		}
		switch {
		case b.Position.Top:
			idx = len(order)
		case b.Position.Bottom:
			idx = 0
		case b.Position.set:
			idx = b.Position.Index
		}
		if idx < 0 || idx > len(order) {
			return GuildSeedResult{}, fmt.Errorf("guild %s: bot position %d out of range 0..%d", id, idx, len(order))
		}
		order = append(order[:idx], append([]*roleState{r}, order[idx:]...)...)
		g.Roles[rid] = r
		g.Members[app.BotUserID] = &memberState{UserID: app.BotUserID, Roles: []string{rid}, JoinedAt: e.now().UTC()}
		res.BotRoleIDs[app.ID] = rid
	}
	g.renumber(order)
	e.w.Guilds[id] = g
	for _, ms := range s.Members {
		if err := e.addMemberLocked(g, ms, keys); err != nil {
			delete(e.w.Guilds, id)
			return GuildSeedResult{}, err
		}
	}
	for _, bs := range s.Bans {
		if e.w.Users[bs.UserID] == nil {
			delete(e.w.Guilds, id)
			return GuildSeedResult{}, fmt.Errorf("guild %s: ban of unknown user %s", id, bs.UserID)
		}
		g.Bans[bs.UserID] = &banState{UserID: bs.UserID, Reason: bs.Reason}
	}
	res.Guild = guildWire(g, false)
	return res, nil
}

func (e *Emulator) roleFromSeedLocked(g *guildState, rs RoleSeed) (*roleState, error) {
	rid := rs.ID
	if rid == "" {
		rid = e.newIDLocked()
	} else if !isSnowflake(rid) {
		return nil, fmt.Errorf("guild %s: role id %q is not a snowflake", g.ID, rid)
	}
	if g.Roles[rid] != nil {
		return nil, fmt.Errorf("guild %s: duplicate role id %s", g.ID, rid)
	}
	name := rs.Name
	if name == "" {
		name = rs.Key
	}
	r := &roleState{ID: rid, Name: name, Permissions: uint64(rs.Permissions), Color: rs.Color, Hoist: rs.Hoist,
		Mentionable: rs.Mentionable, Managed: rs.Managed || rs.Tags != nil, UnicodeEmoji: rs.UnicodeEmoji}
	if rs.Tags != nil {
		r.Tags = &roleTags{BotID: rs.Tags.BotID, IntegrationID: rs.Tags.IntegrationID, PremiumSubscriber: rs.Tags.PremiumSubscriber}
	}
	return r, nil
}

func (e *Emulator) addMemberLocked(g *guildState, ms MemberSeed, keys map[string]string) error {
	if e.w.Users[ms.UserID] == nil {
		return fmt.Errorf("guild %s: member %s is not a known user", g.ID, ms.UserID)
	}
	m := &memberState{UserID: ms.UserID, Roles: []string{}, Nick: ms.Nick, Pending: ms.Pending, JoinedAt: e.now().UTC()}
	if ms.JoinedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, ms.JoinedAt)
		if err != nil {
			return fmt.Errorf("guild %s: member %s joined_at: %w", g.ID, ms.UserID, err)
		}
		m.JoinedAt = t.UTC()
	}
	for _, ref := range ms.Roles {
		rid := ref
		if k, ok := keys[ref]; ok {
			rid = k
		}
		if g.Roles[rid] == nil || rid == g.ID {
			return fmt.Errorf("guild %s: member %s: unknown role %q", g.ID, ms.UserID, ref)
		}
		if !m.hasRole(rid) {
			m.Roles = append(m.Roles, rid)
		}
	}
	g.Members[ms.UserID] = m
	return nil
}

// Fixture is the YAML/JSON fixture document (§11).
type Fixture struct {
	Applications []ApplicationSeed `json:"applications" yaml:"applications"`
	Users        []UserSeed        `json:"users" yaml:"users"`
	Guilds       []GuildSeed       `json:"guilds" yaml:"guilds"`
}

// ParseFixture decodes a YAML (or JSON) fixture document strictly.
func ParseFixture(data []byte) (*Fixture, error) {
	var f Fixture
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if err.Error() == "EOF" {
			return &f, nil
		}
		return nil, fmt.Errorf("discordemu: decode fixture: %w", err)
	}
	return &f, nil
}

// LoadFixture seeds the emulator from a YAML fixture document. On error nothing
// is applied.
func (e *Emulator) LoadFixture(data []byte) error {
	f, err := ParseFixture(data)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	backup, err := e.snapshotLocked()
	if err != nil {
		return err
	}
	if err := e.applyFixtureLocked(f); err != nil {
		_ = e.restoreLocked(backup)
		return err
	}
	e.afterCommitLocked()
	return nil
}

func (e *Emulator) applyFixtureLocked(f *Fixture) error {
	for _, u := range f.Users {
		if _, err := e.createUserLocked(u); err != nil {
			return fmt.Errorf("discordemu: fixture user: %w", err)
		}
	}
	for _, a := range f.Applications {
		if _, err := e.createAppLocked(a); err != nil {
			return fmt.Errorf("discordemu: fixture application: %w", err)
		}
	}
	for _, g := range f.Guilds {
		if _, err := e.createGuildLocked(g); err != nil {
			return fmt.Errorf("discordemu: fixture guild: %w", err)
		}
	}
	return nil
}
