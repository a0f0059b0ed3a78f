package discordemu

import (
	"fmt"

	"encoding/json"
	"gopkg.in/yaml.v3"
	"time"
)

// tsLayout is Discord's ISO8601 timestamp format with microseconds and offset.
const tsLayout = "2006-01-02T15:04:05.000000+00:00"

func fmtTS(t time.Time) string { return t.UTC().Format(tsLayout) }

func fmtTSPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := fmtTS(*t)
	return &s
}

// User is the Discord user object as the emulator emits it.
type User struct {
	ID           string  `json:"id"`
	Username     string  `json:"username"`
	Discrim      string  `json:"discriminator"`
	GlobalName   *string `json:"global_name"`
	Avatar       *string `json:"avatar"`
	PublicFlags  int     `json:"public_flags"`
	Flags        int     `json:"flags"`
	PrimaryGuild *string `json:"primary_guild"`
	Bot          bool    `json:"bot,omitempty"`
	// Only on /users/@me:
	MFAEnabled  *bool   `json:"mfa_enabled,omitempty"`
	Locale      string  `json:"locale,omitempty"`
	PremiumType *int    `json:"premium_type,omitempty"`
	Email       *string `json:"email,omitempty"`
	Verified    *bool   `json:"verified,omitempty"`
}

// RoleColors is the colors object of a role.
type RoleColors struct {
	PrimaryColor   int  `json:"primary_color"`
	SecondaryColor *int `json:"secondary_color"`
	TertiaryColor  *int `json:"tertiary_color"`
}

// RoleTags is the tags object of a managed role. PremiumSubscriber is encoded
// as a present null key when true and omitted when false.
type RoleTags struct {
	BotID             string `json:"bot_id,omitempty"`
	IntegrationID     string `json:"integration_id,omitempty"`
	PremiumSubscriber bool   `json:"-"`
}

// MarshalJSON implements Discord's null-when-true encoding of premium_subscriber.
func (t RoleTags) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if t.BotID != "" {
		m["bot_id"] = t.BotID
	}
	if t.IntegrationID != "" {
		m["integration_id"] = t.IntegrationID
	}
	if t.PremiumSubscriber {
		m["premium_subscriber"] = nil
	}
	return json.Marshal(m)
}

// UnmarshalJSON decodes tags, treating a present premium_subscriber key as true.
func (t *RoleTags) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if v, ok := m["bot_id"]; ok {
		_ = json.Unmarshal(v, &t.BotID)
	}
	if v, ok := m["integration_id"]; ok {
		_ = json.Unmarshal(v, &t.IntegrationID)
	}
	_, t.PremiumSubscriber = m["premium_subscriber"]
	return nil
}

// Role is the Discord role object. Permissions is a decimal string on the wire.
type Role struct {
	ID           string      `json:"id"`
	Name         string      `json:"name"`
	Permissions  Permissions `json:"permissions"`
	Position     int         `json:"position"`
	Color        int         `json:"color"`
	Colors       RoleColors  `json:"colors"`
	Hoist        bool        `json:"hoist"`
	Managed      bool        `json:"managed"`
	Mentionable  bool        `json:"mentionable"`
	Icon         *string     `json:"icon"`
	UnicodeEmoji *string     `json:"unicode_emoji"`
	Flags        int         `json:"flags"`
	Tags         *RoleTags   `json:"tags,omitempty"`
}

// Member is the Discord guild member object.
type Member struct {
	User                       User     `json:"user"`
	Nick                       *string  `json:"nick"`
	Avatar                     *string  `json:"avatar"`
	Banner                     *string  `json:"banner"`
	Roles                      []string `json:"roles"`
	JoinedAt                   string   `json:"joined_at"`
	PremiumSince               *string  `json:"premium_since"`
	Deaf                       bool     `json:"deaf"`
	Mute                       bool     `json:"mute"`
	Flags                      int      `json:"flags"`
	Pending                    bool     `json:"pending"`
	CommunicationDisabledUntil *string  `json:"communication_disabled_until"`
}

// Ban is the Discord ban object.
type Ban struct {
	Reason *string `json:"reason"`
	User   User    `json:"user"`
}

// Guild is the Discord guild object (GuildWithCountsResponse keys).
type Guild struct {
	ID                          string   `json:"id"`
	Name                        string   `json:"name"`
	Icon                        *string  `json:"icon"`
	Description                 *string  `json:"description"`
	HomeHeader                  *string  `json:"home_header"`
	Splash                      *string  `json:"splash"`
	DiscoverySplash             *string  `json:"discovery_splash"`
	Features                    []string `json:"features"`
	Banner                      *string  `json:"banner"`
	OwnerID                     string   `json:"owner_id"`
	ApplicationID               *string  `json:"application_id"`
	Region                      string   `json:"region"`
	AFKChannelID                *string  `json:"afk_channel_id"`
	AFKTimeout                  int      `json:"afk_timeout"`
	SystemChannelID             *string  `json:"system_channel_id"`
	SystemChannelFlags          int      `json:"system_channel_flags"`
	WidgetEnabled               bool     `json:"widget_enabled"`
	WidgetChannelID             *string  `json:"widget_channel_id"`
	VerificationLevel           int      `json:"verification_level"`
	Roles                       []Role   `json:"roles"`
	DefaultMessageNotifications int      `json:"default_message_notifications"`
	MFALevel                    int      `json:"mfa_level"`
	ExplicitContentFilter       int      `json:"explicit_content_filter"`
	MaxPresences                *int     `json:"max_presences"`
	MaxMembers                  int      `json:"max_members"`
	MaxStageVideoChannelUsers   int      `json:"max_stage_video_channel_users"`
	MaxVideoChannelUsers        int      `json:"max_video_channel_users"`
	VanityURLCode               *string  `json:"vanity_url_code"`
	PremiumTier                 int      `json:"premium_tier"`
	PremiumSubscriptionCount    int      `json:"premium_subscription_count"`
	PreferredLocale             string   `json:"preferred_locale"`
	RulesChannelID              *string  `json:"rules_channel_id"`
	SafetyAlertsChannelID       *string  `json:"safety_alerts_channel_id"`
	PublicUpdatesChannelID      *string  `json:"public_updates_channel_id"`
	PremiumProgressBarEnabled   bool     `json:"premium_progress_bar_enabled"`
	NSFW                        bool     `json:"nsfw"`
	NSFWLevel                   int      `json:"nsfw_level"`
	Emojis                      []any    `json:"emojis"`
	Stickers                    []any    `json:"stickers"`
	IncidentsData               any      `json:"incidents_data"`
	ApproximateMemberCount      *int     `json:"approximate_member_count,omitempty"`
	ApproximatePresenceCount    *int     `json:"approximate_presence_count,omitempty"`
}

func userWire(u *userState) User {
	if u == nil {
		return User{Discrim: "0"}
	}
	return User{ID: u.ID, Username: u.Username, Discrim: "0", GlobalName: u.GlobalName, Bot: u.Bot}
}

func roleWire(r *roleState) Role {
	out := Role{
		ID: r.ID, Name: r.Name, Permissions: Permissions(r.Permissions), Position: r.Position,
		Color: r.Color, Colors: RoleColors{PrimaryColor: r.Color}, Hoist: r.Hoist, Managed: r.Managed,
		Mentionable: r.Mentionable, Icon: r.Icon, UnicodeEmoji: r.UnicodeEmoji,
	}
	if r.Tags != nil {
		out.Tags = &RoleTags{BotID: r.Tags.BotID, IntegrationID: r.Tags.IntegrationID, PremiumSubscriber: r.Tags.PremiumSubscriber}
	}
	return out
}

func rolesWire(g *guildState) []Role {
	rs := g.sortedRoles()
	out := make([]Role, len(rs))
	for i, r := range rs {
		out[i] = roleWire(r)
	}
	return out
}

func memberWire(w *world, m *memberState) Member {
	roles := append([]string{}, m.Roles...)
	return Member{
		User: userWire(w.Users[m.UserID]), Nick: m.Nick, Roles: roles, JoinedAt: fmtTS(m.JoinedAt),
		PremiumSince: fmtTSPtr(m.PremiumSince), Flags: m.Flags, Pending: m.Pending,
		CommunicationDisabledUntil: fmtTSPtr(m.CommunicationDisabledUntil),
	}
}

func guildWire(g *guildState, withCounts bool) Guild {
	feats := append([]string{}, g.Features...)
	out := Guild{
		ID: g.ID, Name: g.Name, Features: feats, OwnerID: g.OwnerID, Region: "deprecated", AFKTimeout: 300,
		Roles: rolesWire(g), MaxMembers: 500000, MaxStageVideoChannelUsers: 50, MaxVideoChannelUsers: 25,
		PreferredLocale: "en-US", Emojis: []any{}, Stickers: []any{},
	}
	if withCounts {
		n, z := len(g.Members), 0
		out.ApproximateMemberCount, out.ApproximatePresenceCount = &n, &z
	}
	return out
}

// UnmarshalYAML decodes tags; premium_subscriber is true when the key is present
// (null or true) and false when absent or false.
func (t *RoleTags) UnmarshalYAML(n *yaml.Node) error {
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		switch k {
		case "bot_id":
			t.BotID = fmt.Sprint(v)
		case "integration_id":
			t.IntegrationID = fmt.Sprint(v)
		case "premium_subscriber":
			b, isBool := v.(bool)
			t.PremiumSubscriber = !isBool || b
		default:
			return fmt.Errorf("unknown role tag %q", k)
		}
	}
	return nil
}
