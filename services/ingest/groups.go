package ingest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

func (s *Service) groupView(tenant, id string) *groupRec {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		return t.groups[id]
	}
	return nil
}

// groupETag is the current ETag revision of a group: its record's or its
// latest membership record's, whichever is newer.
func (s *Service) groupETag(tenant string, g *groupRec) uint64 {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		if cur := t.groups[g.id]; cur != nil {
			return cur.etagRev
		}
	}
	return g.etagRev
}

func validateGroup(doc map[string]any) error {
	dn, _ := doc["displayName"].(string)
	if strings.TrimSpace(dn) == "" {
		return badRequest(scimInvalidValue, "displayName is required")
	}
	return nil
}

func (s *Service) checkGroupUnique(tenant, id, displayName string) error {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		if other, ok := t.groupByName[lower(displayName)]; ok && other != id {
			return errf(http.StatusConflict, scimUniqueness, "a group with displayName %q already exists", displayName)
		}
	}
	return nil
}

// memberValues takes the member ids out of a group document. Ids that are
// not users of the tenant are skipped and logged (DESIGN §7's named
// exception: Okta never retries a 400, so one stale id would lose a push).
func (s *Service) memberValues(ctx context.Context, tenant string, doc map[string]any) ([]string, map[string]string, error) {
	raw, _ := doc["members"].([]any)
	delete(doc, "members")
	var ids []string
	display := map[string]string{}
	seen := map[string]bool{}
	for _, m := range raw {
		mm, _ := m.(map[string]any)
		v, _ := mm["value"].(string)
		if v == "" || seen[v] {
			continue
		}
		seen[v] = true
		ids = append(ids, v)
		if d, _ := mm["display"].(string); d != "" {
			if err := checkMemberDisplay(d); err != nil {
				return nil, nil, err
			}
			display[v] = d
		}
	}
	known, err := s.knownUsers(ctx, tenant, ids)
	return known, display, err
}

// maxLoggedUnknown bounds the sample of unknown member ids in the log line.
const maxLoggedUnknown = 5

// knownUsers filters ids to the tenant's users. Unknown ids are judged on a
// current view (a user just created through another replica is known) and
// reported in one log line: their count and a few of them.
func (s *Service) knownUsers(ctx context.Context, tenant string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	check := func() []string {
		s.view.mu.RLock()
		defer s.view.mu.RUnlock()
		t := s.view.tenant(tenant)
		var unknown []string
		for _, id := range ids {
			if t == nil || t.users[id] == nil {
				unknown = append(unknown, id)
			}
		}
		return unknown
	}
	unknown := check()
	if len(unknown) > 0 {
		if err := s.writeBarrier(ctx); err != nil {
			return nil, err
		}
		unknown = check()
	}
	if len(unknown) == 0 {
		return ids, nil
	}
	skip := make(map[string]bool, len(unknown))
	for _, id := range unknown {
		skip[id] = true
	}
	s.log.WarnContext(ctx, "unknown group members skipped", "tenant", tenant, "count", len(unknown),
		"sample_ids", unknown[:min(len(unknown), maxLoggedUnknown)])
	out := ids[:0:0]
	for _, id := range ids {
		if !skip[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// createGroup stores a new group: first its membership records, then the
// uniqueness claim of its displayName, then the group record. Until the
// group record exists the memberships belong to no visible group (the view
// and the applier ignore them), so a failure part-way changes nothing a
// client or Discord sees, and a retry of the POST creates the group afresh
// (the other order would leave the group behind and answer the retry 409).
func (s *Service) createGroup(ctx context.Context, tenant string, body map[string]any) (*groupRec, error) {
	doc, err := normalize(kindGroup, body)
	if err != nil {
		return nil, err
	}
	if err := validateGroup(doc); err != nil {
		return nil, err
	}
	members, display, err := s.memberValues(ctx, tenant, doc)
	if err != nil {
		return nil, err
	}
	dn, _ := doc["displayName"].(string)
	id := newID()
	now := time.Now().UTC()
	finishDoc(doc, id, "Group", now, now)
	ev, err := groupEvent(tenant, eventv1.Operation_OPERATION_CREATE, doc, 1, now, false)
	if err != nil {
		return nil, err
	}
	if err := s.checkSize(ev); err != nil {
		return nil, err
	}
	// A name already taken is refused before anything is written.
	if err := s.checkUnique(ctx, func() error { return s.checkGroupUnique(tenant, id, dn) }); err != nil {
		return nil, err
	}
	changes := map[string]bool{}
	for _, m := range members {
		changes[m] = true
	}
	// The memberships of a new id need no lock (a big group takes seconds).
	if err := s.setMembers(ctx, tenant, id, changes, display); err != nil {
		return nil, notWritten(err) // the group does not exist: nothing visible changed
	}
	unlock := s.lockUnique(tenant + "\x00g\x00" + lower(dn))
	defer unlock()
	err = s.checkGroupUnique(tenant, id, dn)
	if err == nil {
		err = s.claim(ctx, tenant, claimGroup, lower(dn), id)
	}
	if err != nil {
		if len(changes) > 0 {
			// Lost a race for the name: close the memberships written for
			// this id (never visible; best effort).
			s.closeOrphanMembers(ctx, tenant, id, changes)
		}
		return nil, err
	}
	if _, err := s.put(ctx, ev, 0); err != nil {
		if errors.Is(err, errNotWritten) {
			s.releaseClaim(ctx, tenant, claimGroup, lower(dn), id)
		}
		return nil, err
	}
	return s.groupView(tenant, id), nil
}

// closeOrphanMembers closes the memberships of a group id that was never
// created.
func (s *Service) closeOrphanMembers(ctx context.Context, tenant, id string, added map[string]bool) {
	closes := make(map[string]bool, len(added))
	for u := range added {
		closes[u] = false
	}
	if err := s.setMembers(context.WithoutCancel(ctx), tenant, id, closes, nil); err != nil {
		s.log.WarnContext(ctx, "closing the memberships of a group that was not created failed", "tenant", tenant, "group_id", id, "error", err)
	}
}

func (s *Service) getGroupForWrite(ctx context.Context, tenant, id string) (*groupRec, error) {
	g := s.groupView(tenant, id)
	if g == nil {
		return nil, notFound("Group", id)
	}
	return g, nil
}

// currentMembers returns a copy of a group's member set.
func (s *Service) currentMembers(tenant, id string) map[string]bool {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	out := map[string]bool{}
	if t := s.view.tenant(tenant); t != nil {
		for u := range t.members[id] {
			out[u] = true
		}
	}
	return out
}

// memberDelta is a change to a group's member set.
type memberDelta struct {
	replace bool              // start from the empty set
	set     map[string]bool   // user → member after the change
	display map[string]string // display sent by the IdP for added members
}

func (d *memberDelta) put(id string, member bool) {
	if d.set == nil {
		d.set = map[string]bool{}
	}
	d.set[id] = member
}

func (d *memberDelta) putRef(r memberRef) {
	d.put(r.id, true)
	if r.display != "" {
		if d.display == nil {
			d.display = map[string]string{}
		}
		d.display[r.id] = r.display
	}
}

// changes turns the delta into membership writes. It reads the whole
// member set only for a replace; otherwise it costs O(changed members).
func (s *Service) deltaChanges(tenant, groupID string, d *memberDelta) map[string]bool {
	out := map[string]bool{}
	if d.replace {
		for u := range s.currentMembers(tenant, groupID) {
			if !d.set[u] {
				out[u] = false
			}
		}
	}
	s.view.mu.RLock()
	var cur map[string]struct{}
	if t := s.view.tenant(tenant); t != nil {
		cur = t.members[groupID]
	}
	for u, m := range d.set {
		_, is := cur[u]
		if m != is || (m && d.display[u] != "") {
			out[u] = m
		}
	}
	s.view.mu.RUnlock()
	return out
}

// updateGroup changes a group's attributes (compare-and-set on its record)
// and members (one record each).
func (s *Service) updateGroup(ctx context.Context, tenant, id, ifMatch string, change func(cur map[string]any, members func() map[string]bool) (map[string]any, *memberDelta, error)) (*groupRec, error) {
	// Decide on the newest state (If-Match, no-op checks, CAS revisions).
	if err := s.writeBarrier(ctx); err != nil {
		return nil, err
	}
	for range maxCASRetries {
		cur, err := s.getGroupForWrite(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ifMatch != "" && !etagMatches(ifMatch, cur.etagRev) {
			return nil, errPreconditionFailed
		}
		curDoc, err := decodeObject(cur.raw)
		if err != nil {
			return nil, err
		}
		before := cloneDoc(curDoc)
		wroteAttrs := false
		newDoc, delta, err := change(curDoc, func() map[string]bool { return s.currentMembers(tenant, id) })
		if err != nil {
			return nil, err
		}
		if delta != nil {
			var add []string
			for u, m := range delta.set {
				if m {
					add = append(add, u)
				}
			}
			knownIDs, err := s.knownUsers(ctx, tenant, add)
			if err != nil {
				return nil, err
			}
			known := map[string]bool{}
			for _, u := range knownIDs {
				known[u] = true
			}
			for _, u := range add {
				if !known[u] {
					delete(delta.set, u)
				}
			}
		}
		if err := validateGroup(newDoc); err != nil {
			return nil, err
		}
		newDoc["id"], newDoc["meta"], newDoc["schemas"] = before["id"], before["meta"], before["schemas"]
		if !jsonEqual(before, newDoc) {
			now := time.Now().UTC()
			finishDoc(newDoc, id, "Group", cur.created, now)
			ev, err := groupEvent(tenant, eventv1.Operation_OPERATION_UPDATE, newDoc, cur.version+1, now, false)
			if err != nil {
				return nil, err
			}
			if err := s.checkSize(ev); err != nil {
				return nil, err
			}
			dn, _ := newDoc["displayName"].(string)
			claimed := lower(dn) != lower(cur.displayName)
			unlock := s.lockUnique(tenant + "\x00g\x00" + lower(dn))
			if err := s.checkGroupUnique(tenant, id, dn); err != nil {
				unlock()
				return nil, err
			}
			if claimed {
				if err := s.claim(ctx, tenant, claimGroup, lower(dn), id); err != nil {
					unlock()
					return nil, err
				}
			}
			_, err = s.put(ctx, ev, cur.rev)
			if claimed && errors.Is(err, errNotWritten) {
				s.releaseClaim(ctx, tenant, claimGroup, lower(dn), id)
			}
			unlock()
			if errors.Is(err, eventbus.ErrConflict) {
				if ifMatch != "" {
					return nil, errPreconditionFailed
				}
				if err := s.refresh(ctx, eventbus.GroupKey(tenant, id)); err != nil {
					return nil, err
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			wroteAttrs = true
		}
		if delta != nil {
			if err := s.setMembers(ctx, tenant, id, s.deltaChanges(tenant, id, delta), delta.display); err != nil {
				if wroteAttrs {
					return nil, partial(err)
				}
				return nil, err
			}
		}
		return s.groupView(tenant, id), nil
	}
	return nil, errf(http.StatusConflict, "", "group %q is being changed concurrently; retry", id)
}

// replaceGroup is PUT /Groups/{id}: attributes and the whole member list.
func (s *Service) replaceGroup(ctx context.Context, tenant, id, ifMatch string, body map[string]any) (*groupRec, error) {
	doc, err := normalize(kindGroup, body)
	if err != nil {
		return nil, err
	}
	raw, _ := doc["members"].([]any)
	delete(doc, "members")
	delta := &memberDelta{replace: true, set: map[string]bool{}}
	for _, m := range raw {
		mm, _ := m.(map[string]any)
		if v, _ := mm["value"].(string); v != "" {
			d, _ := mm["display"].(string)
			if err := checkMemberDisplay(d); err != nil {
				return nil, err
			}
			delta.putRef(memberRef{id: v, display: d})
		}
	}
	return s.updateGroup(ctx, tenant, id, ifMatch, func(map[string]any, func() map[string]bool) (map[string]any, *memberDelta, error) {
		return cloneDoc(doc), delta, nil
	})
}

// patchGroup is PATCH /Groups/{id}.
func (s *Service) patchGroup(ctx context.Context, tenant, id, ifMatch string, ops []patchOp) (*groupRec, error) {
	return s.updateGroup(ctx, tenant, id, ifMatch, func(cur map[string]any, members func() map[string]bool) (map[string]any, *memberDelta, error) {
		delete(cur, "meta")
		delete(cur, "schemas")
		delete(cur, "id")
		delta, err := applyGroupPatch(cur, ops, members)
		if err != nil {
			return nil, nil, err
		}
		doc, err := normalize(kindGroup, cur)
		if err != nil {
			return nil, nil, err
		}
		delete(doc, "members")
		return doc, delta, nil
	})
}

// deleteGroup is DELETE /Groups/{id}: its memberships are closed first (so
// the applier sees every member lose the group), then the group record is
// written with op DELETE.
func (s *Service) deleteGroup(ctx context.Context, tenant, id, ifMatch string) error {
	// Decide on the newest state (If-Match, the memberships to close).
	if err := s.writeBarrier(ctx); err != nil {
		return err
	}
	wrote := false
	for range maxCASRetries {
		cur, err := s.getGroupForWrite(ctx, tenant, id)
		if err != nil {
			return err
		}
		if ifMatch != "" && !etagMatches(ifMatch, cur.etagRev) {
			return errPreconditionFailed
		}
		changes := map[string]bool{}
		for u := range s.currentMembers(tenant, id) {
			changes[u] = false
		}
		if err := s.setMembers(ctx, tenant, id, changes, nil); err != nil {
			if wrote || len(changes) > 0 {
				return partial(err)
			}
			return err
		}
		wrote = wrote || len(changes) > 0
		doc, err := decodeObject(cur.raw)
		if err != nil {
			return err
		}
		ev, err := groupEvent(tenant, eventv1.Operation_OPERATION_DELETE, doc, cur.version+1, time.Now().UTC(), true)
		if err != nil {
			return err
		}
		_, err = s.put(ctx, ev, cur.rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, eventbus.ErrConflict) {
			if wrote {
				return partial(err)
			}
			return err
		}
		if ifMatch != "" {
			return errPreconditionFailed
		}
		if err := s.refresh(ctx, eventbus.GroupKey(tenant, id)); err != nil {
			return err
		}
	}
	return errf(http.StatusConflict, "", "group %q is being changed concurrently; retry", id)
}
