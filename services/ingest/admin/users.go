package admin

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
	"github.com/scimcord/scimcord/services/ingest"
)

// UserView is a SCIM user as the operator sees it.
type UserView struct {
	ID            string    `json:"id"`
	UserName      string    `json:"userName"`
	ExternalID    string    `json:"externalId"`
	Active        bool      `json:"active"`
	Deleted       bool      `json:"deleted"`
	DiscordUserID string    `json:"discordUserId"`
	Version       uint64    `json:"version"`
	LastChange    time.Time `json:"lastChange"`
	LastOp        string    `json:"lastOp"`
	// LastTraceID is the trace of the SCIM request that last changed the
	// user (from the traceparent stored with the record).
	LastTraceID string `json:"lastTraceId"`
}

// GroupView is one group the user belongs to.
type GroupView struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	ExternalID  string `json:"externalId"`
	// MembershipTraceID is the trace of the SCIM request that added the user.
	MembershipTraceID string `json:"membershipTraceId"`
}

// lastTrace returns the trace id of the write that stored key's current
// record: the traceparent travels in the message headers (eventbus.Put).
func (s *Server) lastTrace(ctx context.Context, key string) string {
	if !eventbus.ValidKey(key) {
		return ""
	}
	stream, err := s.deps.JS.Stream(ctx, eventbus.ResourceStream)
	if err != nil {
		return ""
	}
	msg, err := stream.GetLastMsgForSubject(ctx, eventbus.ResourceSubjectPrefix+key)
	if err != nil || msg.Header == nil {
		return ""
	}
	parts := strings.Split(msg.Header.Get("traceparent"), "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0123456789abcdef") != "" {
		return ""
	}
	return parts[1]
}

type user struct {
	UserView
	Snapshot []byte
}

func (u user) view() UserView { return u.UserView }

func userOf(rec eventbus.Record) (user, bool) {
	u := rec.Event.GetUser()
	if u == nil {
		return user{}, false
	}
	return user{UserView: UserView{
		ID: u.GetId(), UserName: u.GetUserName(), ExternalID: u.GetExternalId(), Active: u.GetActive(),
		Deleted:       u.GetDeleted() || rec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE,
		DiscordUserID: u.GetDiscordUserId(), Version: rec.Event.GetVersion(),
		LastChange: rec.Event.GetTime().AsTime(), LastOp: strings.TrimPrefix(rec.Event.GetOp().String(), "OPERATION_"),
	}, Snapshot: rec.Event.GetSnapshot()}, true
}

// maxQuery bounds the user string of a lookup (a userName, SCIM id or
// Discord id; SCIM ids and claim keys are far shorter).
const maxQuery = eventbus.MaxTokenLen

// lookup finds a user of tenant t by SCIM id, userName (case-insensitive)
// or Discord user id, and the groups it is a member of. The raw string is
// never part of a key or subject: it is a key token only when it is a valid
// one (a SCIM or Discord id), and userNames go through the claim keys (a
// hash) or the bounded scan — so any userName (dots, spaces, unicode) can be
// looked up, and no input reaches NATS as a subject.
func (s *Server) lookup(ctx context.Context, t *tenants.Tenant, q string) (user, []GroupView, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return user{}, nil, badRequest("user is required: a userName, SCIM id or Discord user id")
	}
	if len(q) > maxQuery {
		return user{}, nil, badRequest("user: %d bytes, at most %d (a userName, SCIM id or Discord user id)", len(q), maxQuery)
	}
	st, err := s.store(ctx)
	if err != nil {
		return user{}, nil, err
	}
	var found *user
	if eventbus.ValidToken(q) {
		if rec, err := st.Get(ctx, eventbus.UserKey(t.ID, q)); err == nil {
			if u, ok := userOf(rec); ok {
				found = &u
			}
		} else if !errors.Is(err, eventbus.ErrNotFound) {
			return user{}, nil, unavailable("read user: %v", err)
		}
	}
	if found == nil {
		found = s.byClaim(ctx, st, t.ID, q)
	}
	if found == nil {
		// Users stored before their claims (or an externalId): a bounded scan.
		keys, err := st.ListKeys(ctx, t.ID+".u.*")
		if err != nil {
			return user{}, nil, unavailable("list users: %v", err)
		}
		if len(keys) > maxScan {
			return user{}, nil, notFound("no user with userName or Discord id %q in tenant %q (the SCIM id works too)", q, t.ID)
		}
		for _, k := range keys {
			rec, err := st.Get(ctx, k)
			if err != nil {
				continue
			}
			u, ok := userOf(rec)
			if ok && (strings.EqualFold(u.UserName, q) || (u.DiscordUserID != "" && u.DiscordUserID == q) || (u.ExternalID != "" && u.ExternalID == q)) {
				found = &u
				if !u.Deleted {
					break // prefer a live user over a deleted one of the same name
				}
			}
		}
	}
	if found == nil || !eventbus.ValidToken(found.ID) {
		return user{}, nil, notFound("no user %q in tenant %q", q, t.ID)
	}
	groups, err := s.groupsOf(ctx, st, t.ID, found.ID)
	if err != nil {
		return user{}, nil, err
	}
	found.LastTraceID = s.lastTrace(ctx, eventbus.UserKey(t.ID, found.ID))
	return *found, groups, nil
}

// maxScan bounds the fallback scan of a lookup.
const maxScan = 20000

// byClaim finds a user through ingest's uniqueness claims (userName, then
// Discord id): one KV read instead of a scan. The record is checked, since a
// claim may be stale.
func (s *Server) byClaim(ctx context.Context, st *eventbus.Store, tenant, q string) *user {
	kv, err := s.deps.JS.KeyValue(ctx, ingest.UniqueBucket)
	if err != nil {
		return nil
	}
	for _, key := range []string{ingest.UserNameClaimKey(tenant, q), ingest.DiscordClaimKey(tenant, q)} {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var c struct {
			Owner string `json:"owner"`
		}
		if json.Unmarshal(e.Value(), &c) != nil || !eventbus.ValidToken(c.Owner) {
			continue
		}
		rec, err := st.Get(ctx, eventbus.UserKey(tenant, c.Owner))
		if err != nil {
			continue
		}
		if u, ok := userOf(rec); ok && (strings.EqualFold(u.UserName, q) || u.DiscordUserID == q) {
			return &u
		}
	}
	return nil
}

func (s *Server) groupsOf(ctx context.Context, st *eventbus.Store, tenant, userID string) ([]GroupView, error) {
	keys, err := st.ListKeys(ctx, eventbus.UserGroupsFilter(tenant, userID))
	if err != nil {
		return nil, unavailable("list memberships: %v", err)
	}
	out := []GroupView{}
	for _, k := range keys {
		rec, err := st.Get(ctx, k)
		if err != nil {
			continue
		}
		m := rec.Event.GetMembership()
		if m == nil || !m.GetMember() || rec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE {
			continue
		}
		grec, err := st.Get(ctx, eventbus.GroupKey(tenant, m.GetGroupId()))
		if err != nil {
			continue
		}
		g := grec.Event.GetGroup()
		if g == nil || g.GetDeleted() || grec.Event.GetOp() == eventv1.Operation_OPERATION_DELETE {
			continue
		}
		out = append(out, GroupView{ID: g.GetId(), DisplayName: g.GetDisplayName(), ExternalID: g.GetExternalId(),
			MembershipTraceID: s.lastTrace(ctx, k)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DisplayName < out[j].DisplayName })
	return out, nil
}

// userNames maps SCIM user ids to userNames (for the status page).
func (s *Server) userNames(ctx context.Context, tenant string, ids []string) map[string]string {
	out := map[string]string{}
	st, err := s.store(ctx)
	if err != nil {
		return out
	}
	for _, id := range ids {
		if _, ok := out[id]; ok || !eventbus.ValidToken(id) {
			continue
		}
		if rec, err := st.Get(ctx, eventbus.UserKey(tenant, id)); err == nil {
			if u, ok := userOf(rec); ok {
				out[id] = u.UserName
			}
		}
	}
	return out
}
