package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// Auto-created roles (Config.AutoCreateRoles): every SCIM group gets a role of
// its name in each guild of the tenant, created below the bot, renamed with the
// group and deleted with it. Only roles scimcord created are touched: the
// ownership record (bucket Config.RolesBucket, key <tenant>.<guild>.<group>)
// is written before the role is created, so a crash between the two is
// resolved by adopting the role of that name instead of creating another —
// role creation is scarce on Discord (about 250 per guild per 48h).

// ownedRole is the ownership record of an auto-created role.
type ownedRole struct {
	Group  string    `json:"group"`
	Name   string    `json:"name"`
	RoleID string    `json:"role_id,omitempty"`
	State  string    `json:"state"` // creating | created
	Time   time.Time `json:"time"`
}

const (
	roleCreating = "creating"
	roleCreated  = "created"
)

func ownedKey(tenant, guild, group string) string { return tenant + "." + guild + "." + group }

// autoRoleCache caches the owned roles of each tenant × guild for a few seconds.
type autoRoleCache struct {
	mu    sync.Mutex
	at    map[string]time.Time
	roles map[string]map[string]string // tenant|guild → group → role id
	gen   uint64                       // bumped by invalidate: a load that started before is not stored
}

// ensureGroupRole makes the owned role of one group match the group record.
func (s *Service) ensureGroupRole(ctx context.Context, t *tenants.Tenant, g tenants.Guild, rec eventbus.Record) error {
	grp := rec.Event.GetGroup()
	if grp == nil || s.ownedRoles == nil {
		return nil
	}
	key := ownedKey(t.ID, g.ID, grp.GetId())
	entry, err := s.ownedRoles.Get(ctx, key)
	var own ownedRole
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("applier: read owned role %s: %w", key, err)
	default:
		if err := json.Unmarshal(entry.Value(), &own); err != nil {
			return fmt.Errorf("applier: decode owned role %s: %w", key, err)
		}
		rev = entry.Revision()
	}
	name := roleName(grp.GetDisplayName())
	deleted := grp.GetDeleted() || rec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE
	defer s.autoRoles.invalidate(t.ID, g.ID)
	reason := fmt.Sprintf("%s: group %s", s.cfg.AuditReason, grp.GetId())

	if deleted {
		if rev == 0 {
			return nil
		}
		if own.RoleID != "" {
			err := s.dc.call(ctx, Route{routeRoleDelete, g.ID}, "delete role "+own.RoleID, func(tk *Ticket) error {
				return s.dc.DeleteRole(ctx, tk, g.ID, own.RoleID, reason+" deleted")
			})
			var de *DiscordError
			if err != nil && !(errors.As(err, &de) && de.Code == codeUnknownRole) {
				return err
			}
		}
		if err := s.ownedRoles.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("applier: forget owned role %s: %w", key, err)
		}
		s.log.InfoContext(ctx, "auto-created role deleted with its group", "guild", g.ID, "group", grp.GetId(), "role", own.RoleID)
		return nil
	}

	if rev == 0 {
		// Record the intent first; a concurrent replica loses the race here.
		own = ownedRole{Group: grp.GetId(), Name: name, State: roleCreating, Time: time.Now().UTC()}
		data, _ := json.Marshal(own)
		r, err := s.ownedRoles.Create(ctx, key, data)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return eventbus.Retry(fmt.Errorf("applier: owned role %s is being created elsewhere", key), time.Second)
			}
			return fmt.Errorf("applier: record owned role %s: %w", key, err)
		}
		rev = r
	}
	if own.State == roleCreating {
		id, err := s.createOrAdopt(ctx, g.ID, own.Name, reason, own.Time)
		if err != nil {
			return err
		}
		own.RoleID, own.State, own.Time = id, roleCreated, time.Now().UTC()
		data, _ := json.Marshal(own)
		if rev, err = s.ownedRoles.Update(ctx, key, data, rev); err != nil {
			return fmt.Errorf("applier: record owned role %s: %w", key, err)
		}
		s.metrics.inc("roles_created")
		s.log.InfoContext(ctx, "role created for group", "guild", g.ID, "group", grp.GetId(), "role", id, "name", own.Name)
	}
	if own.Name != name {
		err := s.dc.call(ctx, Route{routeRoleEdit, g.ID}, "rename role "+own.RoleID, func(tk *Ticket) error {
			return s.dc.EditRole(ctx, tk, g.ID, own.RoleID, &discordgo.RoleParams{Name: name}, reason+" renamed")
		})
		if err != nil {
			return err
		}
		own.Name, own.Time = name, time.Now().UTC()
		data, _ := json.Marshal(own)
		if _, err := s.ownedRoles.Update(ctx, key, data, rev); err != nil {
			return fmt.Errorf("applier: record owned role %s: %w", key, err)
		}
		s.log.InfoContext(ctx, "auto-created role renamed with its group", "guild", g.ID, "role", own.RoleID, "name", name)
	}
	return nil
}

// createOrAdopt finds a role of that name left by an interrupted creation
// (created after the intent was recorded, so never a human's older role), or
// creates it (no permissions, at the bottom: below the bot).
func (s *Service) createOrAdopt(ctx context.Context, guildID, name, reason string, since time.Time) (string, error) {
	roles, err := s.dc.Roles(ctx, guildID)
	if err != nil {
		return "", err
	}
	owned := s.autoRoles.ownedIDs(ctx, s, "", guildID)
	for _, r := range roles {
		if r.Name == name && !r.Managed && !owned[r.ID] && !snowflakeTime(r.ID).Before(since.Add(-time.Minute)) {
			s.metrics.inc("roles_adopted")
			return r.ID, nil
		}
	}
	var id string
	zero := int64(0)
	err = s.dc.call(ctx, Route{routeGuildRoleNew, guildID}, "create role", func(tk *Ticket) error {
		r, err := s.dc.CreateRole(ctx, tk, guildID, &discordgo.RoleParams{Name: name, Permissions: &zero}, reason+" created")
		if err == nil {
			id = r.ID
		}
		return err
	})
	return id, err
}

// roleName is a Discord role name for a group (1–100 characters).
func roleName(displayName string) string {
	n := strings.TrimSpace(displayName)
	if n == "" {
		n = "group"
	}
	if r := []rune(n); len(r) > 100 {
		n = string(r[:100])
	}
	return n
}

func (c *autoRoleCache) invalidate(tenant, guild string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.at, tenant+"|"+guild)
	c.gen++
}

// groupRoles returns group → role id of the created roles of tenant × guild.
func (c *autoRoleCache) groupRoles(ctx context.Context, s *Service, tenant, guild string) map[string]string {
	k := tenant + "|" + guild
	c.mu.Lock()
	if at, ok := c.at[k]; ok && time.Since(at) < 5*time.Second {
		m := c.roles[k]
		c.mu.Unlock()
		return m
	}
	gen := c.gen
	c.mu.Unlock()
	m := map[string]string{}
	if lister, err := s.ownedRoles.ListKeysFiltered(ctx, ownedKey(tenant, guild, "*")); err == nil {
		for key := range lister.Keys() {
			e, err := s.ownedRoles.Get(ctx, key)
			if err != nil {
				continue
			}
			var own ownedRole
			if json.Unmarshal(e.Value(), &own) == nil && own.State == roleCreated && own.RoleID != "" {
				m[own.Group] = own.RoleID
			}
		}
	}
	c.mu.Lock()
	if c.gen == gen {
		c.at[k], c.roles[k] = time.Now(), m
	}
	c.mu.Unlock()
	return m
}

// ownedIDs is the set of role ids scimcord created in a guild (any tenant when tenant is "").
func (c *autoRoleCache) ownedIDs(ctx context.Context, s *Service, tenant, guild string) map[string]bool {
	out := map[string]bool{}
	for _, t := range s.deps.Tenants.All() {
		if tenant != "" && t.ID != tenant {
			continue
		}
		for _, id := range c.groupRoles(ctx, s, t.ID, guild) {
			out[id] = true
		}
	}
	return out
}

// snowflakeTime is the creation time encoded in a Discord id.
func snowflakeTime(id string) time.Time {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(n>>22) + 1420070400000)
}
