package mapping

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// PreviewReport is the blast radius of replacing a guild's rule set.
type PreviewReport struct {
	Tenant, Guild string
	// CurrentVersion is the version being replaced (0: none); pass it to PutRuleSet.
	CurrentVersion uint64
	// Delete is set when the proposal deletes the rule set.
	Delete bool
	// MembersScanned counts the tenant's (not deleted) SCIM users.
	MembersScanned int
	// Changes lists the members whose roles change, sorted by user id.
	Changes []MemberChange
	// Roles counts, per role, the members gaining and losing it.
	Roles []RoleChange
	// Unmanaged roles leave the managed set: members keep them, scimcord stops
	// managing them. NewlyManaged roles enter it.
	Unmanaged, NewlyManaged []rules.RoleRef
	// Unresolvable lists members whose stored SCIM user is not a readable JSON
	// object: they are left out of Changes (the applier cannot resolve them).
	Unresolvable []string
}

// MemberChange is what one member gains and loses.
type MemberChange struct {
	UserID, UserName, DiscordUserID string
	Gained, Lost                    []rules.RoleRef
}

// RoleChange counts members gaining and losing one role.
type RoleChange struct {
	Role         rules.RoleRef
	Gained, Lost int
}

// scimMember is one SCIM user of the stored state, ready to resolve.
type scimMember struct {
	member        rules.Member
	userName      string
	discordUserID string
}

// Preview computes, from the SCIM state in JetStream, which members would gain
// or lose which roles if doc (YAML or JSON) replaced the guild's rule set, or
// if the rule set were deleted (del). Nothing is written.
func (s *Service) Preview(ctx context.Context, tenant, guild string, doc []byte, del bool) (*PreviewReport, error) {
	if err := checkMember(tenant, guild); err != nil {
		return nil, err
	}
	if s.js == nil {
		return nil, ErrReadOnly
	}
	var proposed *rules.RuleSet
	if !del {
		g, err := rules.DecodeGuild(tenant, guild, doc)
		if err != nil {
			return nil, err
		}
		if proposed, err = rules.Compile(tenant, 0, g); err != nil {
			return nil, err
		}
	}
	current := s.rules.get(tenant, guild)
	members, err := loadMembers(ctx, s.js, tenant)
	if err != nil {
		return nil, err
	}
	return previewSets(ctx, tenant, guild, current, proposed, members), nil
}

// loadMembers reads every user of the tenant with their groups from the SCIM
// state (the `scim` bucket that ingest writes), in one pass over the keys.
func loadMembers(ctx context.Context, js jetstream.JetStream, tenant string) ([]*scimMember, error) {
	if !eventbus.ValidToken(tenant) {
		return nil, fmt.Errorf("%w: tenant_id %q", errBadRequest, tenant)
	}
	kv, err := js.KeyValue(ctx, eventbus.ResourceBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil // nothing provisioned yet
	}
	if err != nil {
		return nil, fmt.Errorf("mapping: open bucket %s: %w", eventbus.ResourceBucket, errors.Join(ErrUnavailable, err))
	}
	w, err := kv.Watch(ctx, tenant+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("mapping: read SCIM state of tenant %q: %w", tenant, errors.Join(ErrUnavailable, err))
	}
	defer func() { _ = w.Stop() }()
	users := map[string]*eventv1.User{}
	snapshots := map[string][]byte{}
	groups := map[string]*eventv1.Group{}
	member := map[string][]string{} // user id → group ids
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e = <-w.Updates():
		}
		if e == nil {
			break
		}
		ev := &eventv1.Event{}
		if err := proto.Unmarshal(e.Value(), ev); err != nil {
			return nil, fmt.Errorf("mapping: decode SCIM record %s rev %d: %w", e.Key(), e.Revision(), err)
		}
		switch r := ev.GetResource().(type) {
		case *eventv1.Event_User:
			if !r.User.GetDeleted() && ev.GetOp() != eventv1.Operation_OPERATION_DELETE {
				users[r.User.GetId()] = r.User
				snapshots[r.User.GetId()] = ev.GetSnapshot()
			}
		case *eventv1.Event_Group:
			if !r.Group.GetDeleted() && ev.GetOp() != eventv1.Operation_OPERATION_DELETE {
				groups[r.Group.GetId()] = r.Group
			}
		case *eventv1.Event_Membership:
			if r.Membership.GetMember() {
				member[r.Membership.GetUserId()] = append(member[r.Membership.GetUserId()], r.Membership.GetGroupId())
			}
		}
	}
	out := make([]*scimMember, 0, len(users))
	for id, u := range users {
		m := &scimMember{
			member:        rules.Member{UserID: id, Active: u.GetActive(), UserJSON: snapshots[id]},
			userName:      u.GetUserName(),
			discordUserID: u.GetDiscordUserId(),
		}
		for _, gid := range member[id] {
			if g, ok := groups[gid]; ok {
				m.member.Groups = append(m.member.Groups, rules.Group{ID: g.GetId(), ExternalID: g.GetExternalId(), DisplayName: g.GetDisplayName()})
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].member.UserID < out[j].member.UserID })
	return out, nil
}

// previewSets diffs the roles of every member under current and proposed
// (either may be nil: no rule set).
func previewSets(ctx context.Context, tenant, guild string, current, proposed *rules.RuleSet, members []*scimMember) *PreviewReport {
	rep := &PreviewReport{Tenant: tenant, Guild: guild, Delete: proposed == nil, MembersScanned: len(members)}
	if current != nil {
		rep.CurrentVersion = current.Version
	}
	resolve := func(rs *rules.RuleSet, m *rules.Member) (map[string]rules.RoleRef, error) {
		out := map[string]rules.RoleRef{}
		if rs != nil {
			got, err := rs.Resolve(ctx, m)
			if err != nil {
				return nil, err
			}
			for _, r := range got {
				out[r.Key()] = r
			}
		}
		return out, nil
	}
	managed := func(rs *rules.RuleSet) map[string]rules.RoleRef {
		out := map[string]rules.RoleRef{}
		if rs != nil {
			for _, r := range rs.Managed() {
				out[r.Key()] = r
			}
		}
		return out
	}
	before, after := managed(current), managed(proposed)
	for k, r := range before {
		if _, ok := after[k]; !ok {
			rep.Unmanaged = append(rep.Unmanaged, r)
		}
	}
	for k, r := range after {
		if _, ok := before[k]; !ok {
			rep.NewlyManaged = append(rep.NewlyManaged, r)
		}
	}
	sortRefs(rep.Unmanaged)
	sortRefs(rep.NewlyManaged)
	counts := map[string]*RoleChange{}
	count := func(r rules.RoleRef) *RoleChange {
		c, ok := counts[r.Key()]
		if !ok {
			c = &RoleChange{Role: r}
			counts[r.Key()] = c
		}
		return c
	}
	for _, m := range members {
		was, err1 := resolve(current, &m.member)
		will, err2 := resolve(proposed, &m.member)
		if err := errors.Join(err1, err2); err != nil {
			// The stored SCIM user cannot be read: the applier cannot resolve it
			// either, so nothing changes for it; say so rather than guess.
			rep.Unresolvable = append(rep.Unresolvable, m.member.UserID)
			continue
		}
		ch := MemberChange{UserID: m.member.UserID, UserName: m.userName, DiscordUserID: m.discordUserID}
		for k, r := range will {
			if _, ok := was[k]; !ok {
				ch.Gained = append(ch.Gained, r)
				count(r).Gained++
			}
		}
		for k, r := range was {
			if _, ok := will[k]; ok {
				continue
			}
			if _, stillManaged := after[k]; !stillManaged {
				continue // no longer managed: the member keeps it
			}
			ch.Lost = append(ch.Lost, r)
			count(r).Lost++
		}
		if len(ch.Gained)+len(ch.Lost) > 0 {
			sortRefs(ch.Gained)
			sortRefs(ch.Lost)
			rep.Changes = append(rep.Changes, ch)
		}
	}
	for _, c := range counts {
		rep.Roles = append(rep.Roles, *c)
	}
	sort.Slice(rep.Roles, func(i, j int) bool { return rep.Roles[i].Role.Key() < rep.Roles[j].Role.Key() })
	return rep
}

func sortRefs(s []rules.RoleRef) {
	sort.Slice(s, func(i, j int) bool { return s[i].Key() < s[j].Key() })
}
