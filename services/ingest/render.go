package ingest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userETag is the revision of a user's ETag (see tenantView.userVersion).
func (s *Service) userETag(tenant string, u *userRec) uint64 {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		rev, _ := t.userVersion(u)
		return rev
	}
	return u.rev
}

func parseETag(v any) uint64 {
	s, _ := v.(string)
	n, _ := strconv.ParseUint(strings.Trim(strings.TrimPrefix(s, "W/"), `"`), 10, 64)
	return n
}

// renderUser is the SCIM representation of a user: its snapshot plus
// meta.location, meta.version and the read-only groups.
func (s *Service) renderUser(tenant string, u *userRec, base string) map[string]any {
	doc, err := decodeObject(u.raw)
	if err != nil {
		doc = map[string]any{"id": u.id, "userName": u.userName}
	}
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{"resourceType": "User"}
		doc["meta"] = meta
	}
	meta["location"] = base + "/Users/" + u.id
	s.view.mu.RLock()
	var groups []any
	rev, modified := u.rev, u.modified
	if t := s.view.tenant(tenant); t != nil {
		rev, modified = t.userVersion(u)
		for gid := range t.userGroups[u.id] {
			if g := t.groups[gid]; g != nil {
				groups = append(groups, map[string]any{"value": gid, "display": g.displayName, "$ref": base + "/Groups/" + gid, "type": "direct"})
			}
		}
	}
	s.view.mu.RUnlock()
	meta["version"] = etag(rev)
	if !modified.IsZero() {
		meta["lastModified"] = formatTime(modified)
	}
	if len(groups) > 0 {
		slices.SortFunc(groups, func(a, b any) int {
			return strings.Compare(a.(map[string]any)["value"].(string), b.(map[string]any)["value"].(string))
		})
		doc["groups"] = groups
	}
	return doc
}

// renderGroup is the SCIM representation of a group with all its members.
func (s *Service) renderGroup(tenant string, g *groupRec, base string) map[string]any {
	return s.renderGroupOpt(tenant, g, base, true)
}

// renderGroupOpt renders a group, with its members only when asked (Entra's
// frequent `excludedAttributes=members` probe must not cost O(group size)).
func (s *Service) renderGroupOpt(tenant string, g *groupRec, base string, withMembers bool) map[string]any {
	doc, err := decodeObject(g.raw)
	if err != nil {
		doc = map[string]any{"id": g.id, "displayName": g.displayName}
	}
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{"resourceType": "Group"}
		doc["meta"] = meta
	}
	meta["location"] = base + "/Groups/" + g.id
	members := []any{}
	s.view.mu.RLock()
	t := s.view.tenant(tenant)
	rev, modified := g.etagRev, g.modified
	if cur := t.groups[g.id]; cur != nil && cur.rev == g.rev {
		rev, modified = cur.etagRev, cur.modified
	}
	var ids []string
	if withMembers {
		ids = make([]string, 0, len(t.members[g.id]))
	}
	for uid := range t.members[g.id] {
		if !withMembers {
			break
		}
		if t.users[uid] != nil {
			ids = append(ids, uid)
		}
	}
	slices.Sort(ids)
	for _, uid := range ids {
		u := t.users[uid]
		display := t.memberDisplay[memberKey(g.id, uid)]
		if display == "" {
			display = u.displayName
		}
		if display == "" {
			display = u.userName
		}
		members = append(members, map[string]any{"value": uid, "display": display, "$ref": base + "/Users/" + uid, "type": "User"})
	}
	s.view.mu.RUnlock()
	meta["version"] = etag(rev)
	if !modified.IsZero() {
		meta["lastModified"] = modified.UTC().Format(time.RFC3339Nano)
	}
	if withMembers {
		doc["members"] = members
	}
	return doc
}

// projection is attributes / excludedAttributes (RFC 7644 §3.4.2.5).
type projection struct {
	attrs, excluded []string
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseProjection(_ resourceKind, q url.Values) (projection, error) {
	return projection{attrs: splitList(q.Get("attributes")), excluded: splitList(q.Get("excludedAttributes"))}, nil
}

// wants reports whether the projection can return attribute name.
func (p projection) wants(name string) bool {
	if len(p.attrs) > 0 {
		for _, a := range p.attrs {
			la, ln := strings.ToLower(a), strings.ToLower(name)
			if la == ln || strings.HasPrefix(la, ln+".") || strings.HasPrefix(la, ln+"[") || strings.HasSuffix(la, ":"+ln) {
				return true
			}
		}
		return false
	}
	for _, a := range p.excluded {
		if strings.EqualFold(a, name) {
			return false
		}
	}
	return true
}

// alwaysReturned reports whether a top-level attribute is never removed by
// a projection: "schemas", and the attributes /Schemas lists with
// returned "always" (id, a user's userName) — RFC 7643 §2.4.
func alwaysReturned(k resourceKind, name string) bool {
	if strings.EqualFold(name, "schemas") {
		return true
	}
	_, a := lookupAttr(k, "", name)
	return a != nil && a.Returned == "always"
}

// apply returns doc reduced per the projection.
func (p projection) apply(k resourceKind, doc map[string]any) map[string]any {
	if len(p.attrs) == 0 && len(p.excluded) == 0 {
		return doc
	}
	var out map[string]any
	if len(p.attrs) > 0 {
		out = map[string]any{}
		for key, v := range doc {
			if alwaysReturned(k, key) {
				out[key] = v
			}
		}
		for _, a := range p.attrs {
			copyPath(k, doc, out, a)
		}
	} else {
		out = cloneDoc(doc)
		for _, a := range p.excluded {
			removePath(k, out, a)
		}
	}
	// "schemas" names the extensions the representation still carries.
	if list, ok := out["schemas"].([]any); ok {
		kept := make([]any, 0, len(list))
		for _, u := range list {
			us, _ := u.(string)
			if extensionByURN(k, us) != nil {
				if _, present := out[us]; !present {
					continue
				}
			}
			kept = append(kept, u)
		}
		out["schemas"] = kept
	}
	return out
}

// splitAttrPath splits "urn:…:name.sub" into container key, attribute and
// sub-attribute names as spelled in doc.
func splitAttrPath(k resourceKind, doc map[string]any, p string) (container string, name string, sub string) {
	urn, rest := splitURNPath(k, p)
	if urn == "" {
		// A bare extension URN asks for the whole extension object.
		if ext := extensionByURN(k, p); ext != nil {
			return "", ext.ID, ""
		}
	}
	name, sub, _ = strings.Cut(rest, ".")
	if ext := extensionByURN(k, urn); ext != nil {
		container = ext.ID
	}
	src := doc
	if container != "" {
		src, _ = doc[container].(map[string]any)
	}
	for key := range src {
		if strings.EqualFold(key, name) {
			name = key
			break
		}
	}
	return container, name, sub
}

func copyPath(k resourceKind, src, dst map[string]any, p string) {
	if strings.Contains(p, "[") {
		copyFiltered(k, src, dst, p)
		return
	}
	container, name, sub := splitAttrPath(k, src, p)
	from, to := src, dst
	if container != "" {
		from, _ = src[container].(map[string]any)
		if from == nil {
			return
		}
		t, _ := dst[container].(map[string]any)
		if t == nil {
			t = map[string]any{}
			dst[container] = t
		}
		to = t
	}
	v, ok := from[name]
	if !ok {
		return
	}
	if sub == "" {
		to[name] = v
		return
	}
	switch x := v.(type) {
	case map[string]any:
		t, _ := to[name].(map[string]any)
		if t == nil {
			t = map[string]any{}
			to[name] = t
		}
		if sv := getFold(x, sub); sv != nil {
			t[sub] = sv
		}
	case []any:
		var list []any
		for _, el := range x {
			if m, ok := el.(map[string]any); ok {
				if sv := getFold(m, sub); sv != nil {
					list = append(list, map[string]any{sub: sv})
				}
			}
		}
		if list != nil {
			to[name] = list
		}
	}
}

func removePath(k resourceKind, doc map[string]any, p string) {
	container, name, sub := splitAttrPath(k, doc, p)
	c := doc
	if container != "" {
		c, _ = doc[container].(map[string]any)
		if c == nil {
			return
		}
	}
	if alwaysReturned(k, name) && container == "" {
		return
	}
	if sub == "" {
		delete(c, name)
		return
	}
	switch x := c[name].(type) {
	case map[string]any:
		for key := range x {
			if strings.EqualFold(key, sub) {
				delete(x, key)
			}
		}
	case []any:
		for _, el := range x {
			if m, ok := el.(map[string]any); ok {
				for key := range m {
					if strings.EqualFold(key, sub) {
						delete(m, key)
					}
				}
			}
		}
	}
}

// listQuery is a list or search request.
type listQuery struct {
	filter     string
	startIndex int
	count      int
	sortBy     string
	descending bool
	proj       projection
}

func (s *Service) parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{filter: q.Get("filter"), startIndex: 1, count: s.cfg.MaxResults, sortBy: q.Get("sortBy")}
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return lq, badRequest(scimInvalidValue, "startIndex must be an integer")
		}
		lq.startIndex = max(n, 1) // below 1 is 1 (RFC 7644 §3.4.2.4)
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return lq, badRequest(scimInvalidValue, "count must be an integer")
		}
		// Capped here, for every list endpoint (RFC 7644 §3.4.2.4 allows
		// fewer): page arithmetic never sees a count near MaxInt.
		lq.count = min(max(n, 0), s.cfg.MaxResults)
	}
	so := strings.ToLower(q.Get("sortOrder"))
	if so != "" && so != "ascending" && so != "descending" {
		return lq, badRequest(scimInvalidValue, "sortOrder must be ascending or descending")
	}
	lq.descending = so == "descending"
	lq.proj = projection{attrs: splitList(q.Get("attributes")), excluded: splitList(q.Get("excludedAttributes"))}
	return lq, nil
}

func (s *Service) handleList(q *request, k resourceKind) {
	lq, err := s.parseListQuery(q.r.URL.Query())
	if err != nil {
		s.writeError(q, err)
		return
	}
	resp, err := s.list(q, k, lq)
	if err != nil {
		s.writeError(q, err)
		return
	}
	s.writeJSON(q, http.StatusOK, resp)
}

// handleSearch is POST /.search (RFC 7644 §3.4.3); k < 0 searches Users
// and Groups.
func (s *Service) handleSearch(q *request, k resourceKind) {
	body, err := s.readBody(q, s.cfg.MaxBodyBytes)
	if err != nil {
		s.writeError(q, err)
		return
	}
	v := url.Values{}
	for _, key := range []string{"filter", "sortBy", "sortOrder"} {
		if x, ok := getFold(body, key).(string); ok {
			v.Set(key, x)
		}
	}
	for _, key := range []string{"startIndex", "count"} {
		if x := getFold(body, key); x != nil {
			v.Set(key, strings.Trim(jsonText(x), `"`))
		}
	}
	for _, key := range []string{"attributes", "excludedAttributes"} {
		var parts []string
		for _, e := range asList(getFold(body, key)) {
			if s, ok := e.(string); ok {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			v.Set(key, strings.Join(parts, ","))
		}
	}
	lq, err := s.parseListQuery(v)
	if err != nil {
		s.writeError(q, err)
		return
	}
	if k >= 0 {
		resp, err := s.list(q, k, lq)
		if err != nil {
			s.writeError(q, err)
			return
		}
		s.writeJSON(q, http.StatusOK, resp)
		return
	}
	resp, err := s.searchAll(q, lq)
	if err != nil {
		s.writeError(q, err)
		return
	}
	s.writeJSON(q, http.StatusOK, resp)
}

func jsonText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func page(all []any, lq listQuery, total int) map[string]any {
	si := max(lq.startIndex, 1)
	cnt := max(lq.count, 0)
	var res []any
	if from := si - 1; from < len(all) {
		// Overflow-safe: cnt is compared with what is left, never added.
		res = all[from : from+min(cnt, len(all)-from)]
	}
	if res == nil {
		res = []any{}
	}
	return map[string]any{
		"schemas":      []string{schemaListResp},
		"totalResults": total,
		"startIndex":   si,
		"itemsPerPage": len(res),
		"Resources":    res,
	}
}

// copyFiltered handles `attributes=emails[type eq "work"]` (not in the RFC
// grammar; Microsoft's collection sends it): the matching values of the
// multi-valued attribute are returned.
func copyFiltered(k resourceKind, src, dst map[string]any, p string) {
	urn, rest := splitURNPath(k, p)
	if urn != "" {
		return
	}
	pp, err := parsePathSafe(rest)
	if err != nil || pp.ValueExpression == nil {
		return
	}
	_, a := lookupAttr(k, "", pp.AttributePath.AttributeName)
	if a == nil || !a.Multi || a.Type != tComplex || checkFilterAttrs(k, pp.ValueExpression, a) != nil {
		return
	}
	var out []any
	for _, el := range asList(src[a.Name]) {
		if m, ok := el.(map[string]any); ok && evalFilter(k, pp.ValueExpression, m, a) {
			out = append(out, el)
		}
	}
	if out != nil {
		dst[a.Name] = out
	}
}
