package discordemu

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Permission bits used by the emulator (Discord permission flags).
const (
	PermCreateInstantInvite uint64 = 1 << 0
	PermKickMembers         uint64 = 1 << 1
	PermBanMembers          uint64 = 1 << 2
	PermAdministrator       uint64 = 1 << 3
	PermManageGuild         uint64 = 1 << 5
	PermViewAuditLog        uint64 = 1 << 7
	PermMuteMembers         uint64 = 1 << 22
	PermDeafenMembers       uint64 = 1 << 23
	PermManageNicknames     uint64 = 1 << 27
	PermManageRoles         uint64 = 1 << 28
	PermModerateMembers     uint64 = 1 << 40
	permAll                 uint64 = (1 << 51) - 1
)

var permNames = map[string]uint64{
	"CREATE_INSTANT_INVITE": PermCreateInstantInvite,
	"KICK_MEMBERS":          PermKickMembers,
	"BAN_MEMBERS":           PermBanMembers,
	"ADMINISTRATOR":         PermAdministrator,
	"MANAGE_CHANNELS":       1 << 4,
	"MANAGE_GUILD":          PermManageGuild,
	"ADD_REACTIONS":         1 << 6,
	"VIEW_AUDIT_LOG":        PermViewAuditLog,
	"VIEW_CHANNEL":          1 << 10,
	"SEND_MESSAGES":         1 << 11,
	"READ_MESSAGE_HISTORY":  1 << 16,
	"CONNECT":               1 << 20,
	"SPEAK":                 1 << 21,
	"MUTE_MEMBERS":          PermMuteMembers,
	"DEAFEN_MEMBERS":        PermDeafenMembers,
	"MOVE_MEMBERS":          1 << 24,
	"CHANGE_NICKNAME":       1 << 26,
	"MANAGE_NICKNAMES":      PermManageNicknames,
	"MANAGE_ROLES":          PermManageRoles,
	"MODERATE_MEMBERS":      PermModerateMembers,
}

// Permissions is a permission bitfield that decodes from a decimal string, an
// integer, or a list of permission names (e.g. [MANAGE_ROLES, KICK_MEMBERS]) or
// a "A|B" string of names. It encodes as a decimal string.
type Permissions uint64

// MarshalJSON encodes the bitfield as a decimal string.
func (p Permissions) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatUint(uint64(p), 10))
}

// UnmarshalJSON accepts a string, a number or a list of names.
func (p *Permissions) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return p.set(v)
}

// UnmarshalYAML accepts a string, a number or a list of names.
func (p *Permissions) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	return p.set(v)
}

func (p *Permissions) set(v any) error {
	switch x := v.(type) {
	case nil:
		*p = 0
	case float64:
		*p = Permissions(uint64(x))
	case int:
		*p = Permissions(uint64(x))
	case string:
		bits, err := parsePermString(x)
		if err != nil {
			return err
		}
		*p = Permissions(bits)
	case []any:
		var bits uint64
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("permission list element %v is not a name", e)
			}
			b, err := parsePermString(s)
			if err != nil {
				return err
			}
			bits |= b
		}
		*p = Permissions(bits)
	default:
		return fmt.Errorf("unsupported permissions value %T", v)
	}
	return nil
}

func parsePermString(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, nil
	}
	var bits uint64
	for _, part := range strings.Split(s, "|") {
		name := strings.ToUpper(strings.TrimSpace(part))
		b, ok := permNames[name]
		if !ok {
			return 0, fmt.Errorf("unknown permission %q", part)
		}
		bits |= b
	}
	return bits, nil
}

// basePerms computes a user's base permissions in a guild (§6.0).
func basePerms(g *guildState, userID string) uint64 {
	if userID == g.OwnerID {
		return permAll
	}
	var p uint64
	if ev := g.Roles[g.ID]; ev != nil {
		p = ev.Permissions
	}
	if m := g.Members[userID]; m != nil {
		for _, rid := range m.Roles {
			if r := g.Roles[rid]; r != nil {
				p |= r.Permissions
			}
		}
	}
	if p&PermAdministrator != 0 {
		return permAll
	}
	return p
}

// hasPerm reports whether the user's base permissions include all bits of want.
func hasPerm(g *guildState, userID string, want uint64) bool {
	return basePerms(g, userID)&want == want
}

// highestPos is the maximum position among the member's roles, 0 if none.
func highestPos(g *guildState, userID string) int {
	m := g.Members[userID]
	if m == nil {
		return 0
	}
	h := 0
	for _, rid := range m.Roles {
		if r := g.Roles[rid]; r != nil && r.Position > h {
			h = r.Position
		}
	}
	return h
}

// outranksRole: actor is the owner, or role.position < actor's highest position.
func outranksRole(g *guildState, actorID string, r *roleState) bool {
	if actorID == g.OwnerID {
		return true
	}
	return r.Position < highestPos(g, actorID)
}

// outranksMember: actor is the owner, or (target is not the owner and the
// target's highest position is below the actor's).
func outranksMember(g *guildState, actorID, targetID string) bool {
	if actorID == g.OwnerID {
		return true
	}
	if targetID == g.OwnerID {
		return false
	}
	return highestPos(g, targetID) < highestPos(g, actorID)
}

// permSubset reports whether want ⊆ have, or the actor is exempt (owner/admin).
func permsGrantable(g *guildState, actorID string, want uint64) bool {
	if actorID == g.OwnerID {
		return true
	}
	have := basePerms(g, actorID)
	if have == permAll {
		return true
	}
	return want&^have == 0
}
