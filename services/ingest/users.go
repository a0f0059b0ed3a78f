package ingest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// maxCASRetries bounds the retries of a write that lost a
// compare-and-set race to a concurrent writer.
const maxCASRetries = 8

// userView returns the current record of a user (nil if none).
func (s *Service) userView(tenant, id string) *userRec {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		return t.users[id]
	}
	return nil
}

// checkUserUnique reports a 409 uniqueness error when another user of the
// tenant has the userName (case-insensitively) or the Discord userId.
func (s *Service) checkUserUnique(tenant, id string, doc map[string]any) error {
	userName, _ := doc["userName"].(string)
	disc := discordID(doc)
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	t := s.view.tenant(tenant)
	if t == nil {
		return nil
	}
	if other, ok := t.userByName[lower(userName)]; ok && other != id {
		return errf(http.StatusConflict, scimUniqueness, "userName %q is already taken", userName)
	}
	if disc != "" {
		if other, ok := t.userByDisc[disc]; ok && other != id {
			return errf(http.StatusConflict, scimUniqueness, "%s:%s %q belongs to another user", SchemaDiscord, discordUserIDAttr, disc)
		}
	}
	return nil
}

// checkUnique runs a uniqueness check on the view; a conflict is confirmed
// on a current view before it is reported (the holder may have been renamed
// or deleted through another replica a moment ago).
func (s *Service) checkUnique(ctx context.Context, check func() error) error {
	err := check()
	if err == nil {
		return nil
	}
	if berr := s.writeBarrier(ctx); berr != nil {
		return berr
	}
	return check()
}

// claimUser claims the user's new unique values across replicas (values it
// already had need no new claim).
func (s *Service) claimUser(ctx context.Context, tenant, id string, doc map[string]any, cur *userRec) error {
	un, _ := doc["userName"].(string)
	if cur == nil || lower(cur.userName) != lower(un) {
		if err := s.claim(ctx, tenant, claimUserName, lower(un), id); err != nil {
			return err
		}
	}
	if d := discordID(doc); d != "" && (cur == nil || cur.discordID != d) {
		return s.claim(ctx, tenant, claimDiscord, d, id)
	}
	return nil
}

// uniqueKeys are the in-process lock keys of a user's unique values.
func uniqueKeys(tenant, userName, discord string) []string {
	keys := []string{tenant + "\x00u\x00" + lower(userName)}
	if discord != "" {
		keys = append(keys, tenant+"\x00d\x00"+discord)
	}
	return keys
}

func discordID(doc map[string]any) string {
	if ext, ok := doc[SchemaDiscord].(map[string]any); ok {
		d, _ := ext[discordUserIDAttr].(string)
		return d
	}
	return ""
}

// validateUser checks a normalised user document.
func validateUser(doc map[string]any) error {
	un, _ := doc["userName"].(string)
	if strings.TrimSpace(un) == "" {
		return badRequest(scimInvalidValue, "userName is required")
	}
	return nil
}

func userSchemas(doc map[string]any) []any {
	out := []any{SchemaUser}
	for _, e := range []string{SchemaEnterprise, SchemaDiscord} {
		if _, ok := doc[e]; ok {
			out = append(out, e)
		}
	}
	return out
}

// finishDoc sets id, schemas and meta on a document about to be stored.
func finishDoc(doc map[string]any, id, resourceType string, created, now time.Time) {
	doc["id"] = id
	if resourceType == "User" {
		doc["schemas"] = userSchemas(doc)
	} else {
		doc["schemas"] = []any{SchemaGroup}
	}
	doc["meta"] = map[string]any{
		"resourceType": resourceType,
		"created":      formatTime(created),
		"lastModified": formatTime(now),
	}
}

// CreateUser stores a new user.
func (s *Service) createUser(ctx context.Context, tenant string, body map[string]any) (*userRec, error) {
	doc, err := normalize(kindUser, body)
	if err != nil {
		return nil, err
	}
	if err := validateUser(doc); err != nil {
		return nil, err
	}
	if _, ok := doc["active"]; !ok {
		doc["active"] = true // a user created without "active" is active (stored explicitly)
	}
	id := newID()
	now := time.Now().UTC()
	finishDoc(doc, id, "User", now, now)
	ev, err := userEvent(tenant, eventv1.Operation_OPERATION_CREATE, doc, 1, now, false)
	if err != nil {
		return nil, err
	}
	if err := s.checkSize(ev); err != nil {
		return nil, err
	}
	un, _ := doc["userName"].(string)
	unlock := s.lockUnique(uniqueKeys(tenant, un, discordID(doc))...)
	defer unlock()
	// No read barrier here: a value taken on another replica is caught by
	// its claim (which then syncs the view to judge it).
	if err := s.checkUnique(ctx, func() error { return s.checkUserUnique(tenant, id, doc) }); err != nil {
		return nil, err
	}
	if err := s.claimUser(ctx, tenant, id, doc, nil); err != nil {
		return nil, err
	}
	if _, err := s.put(ctx, ev, 0); err != nil {
		s.releaseUserClaims(ctx, tenant, id, doc, nil, err)
		return nil, err
	}
	return s.userView(tenant, id), nil
}

// releaseUserClaims gives back the claims claimUser took for a write that
// JetStream certainly did not store, so that a retry of the request is not
// refused as a duplicate of itself. After an unconfirmed write (a timeout)
// the claims stay: the record may exist.
func (s *Service) releaseUserClaims(ctx context.Context, tenant, id string, doc map[string]any, cur *userRec, putErr error) {
	if !errors.Is(putErr, errNotWritten) {
		return
	}
	un, _ := doc["userName"].(string)
	if cur == nil || lower(cur.userName) != lower(un) {
		s.releaseClaim(ctx, tenant, claimUserName, lower(un), id)
	}
	if d := discordID(doc); d != "" && (cur == nil || cur.discordID != d) {
		s.releaseClaim(ctx, tenant, claimDiscord, d, id)
	}
}

// getUserForWrite returns the current user (the caller passed the write
// barrier), or a 404.
func (s *Service) getUserForWrite(ctx context.Context, tenant, id string) (*userRec, error) {
	u := s.userView(tenant, id)
	if u == nil {
		return nil, notFound("User", id)
	}
	return u, nil
}

// updateUser replaces a user's document with the result of change(current),
// with compare-and-set, retrying on a lost race unless ifMatch pins the
// version.
func (s *Service) updateUser(ctx context.Context, tenant, id string, ifMatch string, change func(cur map[string]any) (map[string]any, error)) (*userRec, error) {
	// Decide on the newest state (If-Match, no-op checks, CAS revisions).
	if err := s.writeBarrier(ctx); err != nil {
		return nil, err
	}
	for range maxCASRetries {
		cur, err := s.getUserForWrite(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ifMatch != "" && !etagMatches(ifMatch, s.userETag(tenant, cur)) {
			return nil, errPreconditionFailed
		}
		curDoc, err := decodeObject(cur.raw)
		if err != nil {
			return nil, err
		}
		created := cur.created
		newDoc, err := change(curDoc)
		if err != nil {
			return nil, err
		}
		if err := validateUser(newDoc); err != nil {
			return nil, err
		}
		if _, ok := newDoc["active"]; !ok {
			// "active" removed, set to null, or left out of a PUT: the user
			// keeps its state. An omission never grants access (README).
			newDoc["active"] = cur.active
		}
		// A change that leaves the stored representation as it is writes
		// nothing (no new ETag, no UPDATE event for the applier), as for
		// groups. cur is the authoritative state: the write barrier above
		// (or the re-read after a lost CAS) made the view current.
		if before, err := decodeObject(cur.raw); err == nil {
			newDoc["id"], newDoc["meta"], newDoc["schemas"] = before["id"], before["meta"], before["schemas"]
			if jsonEqual(before, newDoc) {
				return cur, nil
			}
		}
		now := time.Now().UTC()
		finishDoc(newDoc, id, "User", created, now)
		ev, err := userEvent(tenant, eventv1.Operation_OPERATION_UPDATE, newDoc, cur.version+1, now, false)
		if err != nil {
			return nil, err
		}
		if err := s.checkSize(ev); err != nil {
			return nil, err
		}
		un, _ := newDoc["userName"].(string)
		unlock := s.lockUnique(uniqueKeys(tenant, un, discordID(newDoc))...)
		if err := s.checkUserUnique(tenant, id, newDoc); err != nil {
			unlock()
			return nil, err
		}
		if err := s.claimUser(ctx, tenant, id, newDoc, cur); err != nil {
			unlock()
			return nil, err
		}
		_, err = s.put(ctx, ev, cur.rev)
		if err != nil {
			s.releaseUserClaims(ctx, tenant, id, newDoc, cur, err)
		}
		unlock()
		if err == nil {
			return s.userView(tenant, id), nil
		}
		if !errors.Is(err, eventbus.ErrConflict) {
			return nil, err
		}
		if ifMatch != "" {
			return nil, errPreconditionFailed
		}
		if err := s.refresh(ctx, eventbus.UserKey(tenant, id)); err != nil {
			return nil, err
		}
	}
	return nil, errf(http.StatusConflict, "", "user %q is being changed concurrently; retry", id)
}

// replaceUser is PUT /Users/{id}.
func (s *Service) replaceUser(ctx context.Context, tenant, id, ifMatch string, body map[string]any) (*userRec, error) {
	doc, err := normalize(kindUser, body)
	if err != nil {
		return nil, err
	}
	return s.updateUser(ctx, tenant, id, ifMatch, func(map[string]any) (map[string]any, error) {
		return cloneDoc(doc), nil
	})
}

// patchUser is PATCH /Users/{id}.
func (s *Service) patchUser(ctx context.Context, tenant, id, ifMatch string, ops []patchOp) (*userRec, error) {
	return s.updateUser(ctx, tenant, id, ifMatch, func(cur map[string]any) (map[string]any, error) {
		delete(cur, "meta")
		delete(cur, "schemas")
		delete(cur, "id")
		if err := applyPatch(kindUser, cur, ops); err != nil {
			return nil, err
		}
		return normalize(kindUser, cur)
	})
}

// deleteUser is DELETE /Users/{id}: the user's memberships are closed
// first, then the user record is written with op DELETE (its last state kept
// for consumers). In this order a failure part-way leaves the user in place,
// so a retry of the DELETE finishes the job (the other order would answer
// the retry 404 and leave memberships open).
func (s *Service) deleteUser(ctx context.Context, tenant, id, ifMatch string) error {
	// Decide on the newest state (If-Match, the memberships to close).
	if err := s.writeBarrier(ctx); err != nil {
		return err
	}
	wrote := false
	for range maxCASRetries {
		cur, err := s.getUserForWrite(ctx, tenant, id)
		if err != nil {
			return err
		}
		if ifMatch != "" && !etagMatches(ifMatch, s.userETag(tenant, cur)) {
			return errPreconditionFailed
		}
		s.view.mu.RLock()
		var groups []string
		if t := s.view.tenant(tenant); t != nil {
			for g := range t.userGroups[id] {
				groups = append(groups, g)
			}
		}
		s.view.mu.RUnlock()
		slices.Sort(groups)
		for _, g := range groups {
			wrote = true
			if err := s.setMembers(ctx, tenant, g, map[string]bool{id: false}, nil); err != nil {
				return partial(err)
			}
		}
		doc, err := decodeObject(cur.raw)
		if err != nil {
			return err
		}
		ev, err := userEvent(tenant, eventv1.Operation_OPERATION_DELETE, doc, cur.version+1, time.Now().UTC(), true)
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
		if err := s.refresh(ctx, eventbus.UserKey(tenant, id)); err != nil {
			return err
		}
	}
	return errf(http.StatusConflict, "", "user %q is being changed concurrently; retry", id)
}

func cloneDoc(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneDoc(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
