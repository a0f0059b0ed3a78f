package ingest

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// cand is a list candidate.
type cand struct {
	id          string
	created     time.Time
	user        *userRec
	group       *groupRec
	doc         map[string]any
	withMembers bool   // a group is rendered with its members
	key         string // sort key (when sorting)
	hasKey      bool   // the resource has a value for sortBy
}

func (c *cand) kind() resourceKind {
	if c.user != nil {
		return kindUser
	}
	return kindGroup
}

// listPlan is a list request parsed for one resource kind.
type listPlan struct {
	k        resourceKind
	expr     filter.Expression    // nil: no filter
	sorted   bool                 // sortBy given
	sortPath filter.AttributePath // valid when sortAttr != nil
	sortAttr *attr                // nil: the kind has no such attribute (every value missing)
}

// planList parses lq's filter and sortBy for kind k. With lenientSort a
// sortBy this kind does not have is no error: its resources have no sort
// value (the root /.search sorts users and groups together).
func planList(k resourceKind, lq listQuery, lenientSort bool) (listPlan, error) {
	p := listPlan{k: k}
	if strings.TrimSpace(lq.filter) != "" {
		var err error
		p.expr, err = parseFilter(k, lq.filter)
		if err != nil {
			return p, err
		}
	}
	if lq.sortBy != "" {
		p.sorted = true
		e, err := parseFilter(k, lq.sortBy+" pr")
		ae, _ := e.(*filter.AttributeExpression)
		if err == nil && ae != nil {
			p.sortAttr, _ = resolvePath(k, ae.AttributePath, nil)
			p.sortPath = ae.AttributePath
		}
		if p.sortAttr == nil && !lenientSort {
			return p, badRequest(scimInvalidValue, "sortBy %q is not an attribute", truncate(lq.sortBy, 100))
		}
	}
	return p, nil
}

// render renders a candidate once.
func (s *Service) renderCand(q *request, c *cand) map[string]any {
	if c.doc == nil {
		if c.user != nil {
			c.doc = s.renderUser(q.tenant.ID, c.user, q.base)
		} else {
			c.doc = s.renderGroupOpt(q.tenant.ID, c.group, q.base, c.withMembers)
		}
	}
	return c.doc
}

// collect returns the resources of one kind that match the plan's filter,
// in the default order, with their sort keys when sorting. The caller has
// synced the view.
func (s *Service) collect(q *request, p listPlan, lq listQuery) []*cand {
	cands := s.candidates(q.tenant.ID, p.k, p.expr)
	withMembers := lq.proj.wants("members") || strings.Contains(strings.ToLower(lq.filter+" "+lq.sortBy), "members")
	expr := p.expr
	if _, ok := memberValueEq(p.k, expr); ok {
		// The index answered the whole filter: no evaluation, and the
		// members are rendered only if the response wants them.
		expr = nil
		withMembers = lq.proj.wants("members") || strings.Contains(strings.ToLower(lq.sortBy), "members")
	}
	for _, c := range cands {
		c.withMembers = withMembers
	}
	if expr != nil {
		kept := cands[:0]
		for _, c := range cands {
			if evalFilter(p.k, expr, s.renderCand(q, c), nil) {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	if p.sortAttr != nil {
		for _, c := range cands {
			c.key, c.hasKey = sortKey(p.k, s.renderCand(q, c), p.sortPath)
			if c.hasKey && !p.sortAttr.CaseExact {
				c.key = strings.ToLower(c.key)
			}
		}
	}
	return cands
}

// sortCands sorts by the sort keys (RFC 7644 §3.4.2.3): resources without a
// value come last in ascending order and first in descending order (a
// missing value sorts as the greatest); ties keep id order.
func sortCands(cands []*cand, descending bool) {
	slices.SortStableFunc(cands, func(a, b *cand) int {
		var c int
		switch {
		case a.hasKey != b.hasKey:
			c = 1
			if a.hasKey {
				c = -1
			}
		default:
			c = strings.Compare(a.key, b.key)
		}
		if descending {
			c = -c
		}
		if c == 0 {
			c = cmp.Compare(a.id, b.id)
		}
		return c
	})
}

// pageOf renders one page of cands as a ListResponse.
func (s *Service) pageOf(q *request, cands []*cand, lq listQuery) map[string]any {
	total := len(cands)
	si := max(lq.startIndex, 1)
	cnt := min(max(lq.count, 0), s.cfg.MaxResults)
	res := []any{}
	for i := si - 1; i >= 0 && i < total && len(res) < cnt; i++ {
		res = append(res, lq.proj.apply(cands[i].kind(), s.renderCand(q, cands[i])))
	}
	return map[string]any{
		"schemas":      []string{schemaListResp},
		"totalResults": total,
		"startIndex":   si,
		"itemsPerPage": len(res),
		"Resources":    res,
	}
}

// list answers a list or search request from the view.
func (s *Service) list(q *request, k resourceKind, lq listQuery) (map[string]any, error) {
	p, err := planList(k, lq, false)
	if err != nil {
		return nil, err
	}
	s.sync(q.ctx)
	cands := s.collect(q, p, lq)
	if p.sorted {
		sortCands(cands, lq.descending)
	}
	return s.pageOf(q, cands, lq), nil
}

// searchAll is the root POST /.search (RFC 7644 §3.4.3): users and groups
// filtered, sorted and paged together. A filter is applied to each kind
// that has its attributes; one that neither kind can evaluate is 400
// invalidFilter, and a sortBy neither kind has is 400 invalidValue.
func (s *Service) searchAll(q *request, lq listQuery) (map[string]any, error) {
	var plans []listPlan
	var firstErr error
	anySort := false
	for _, k := range []resourceKind{kindUser, kindGroup} {
		p, err := planList(k, lq, true)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		anySort = anySort || p.sortAttr != nil
		plans = append(plans, p)
	}
	if len(plans) == 0 {
		return nil, firstErr
	}
	if lq.sortBy != "" && !anySort {
		return nil, badRequest(scimInvalidValue, "sortBy %q is not an attribute of Users or Groups", truncate(lq.sortBy, 100))
	}
	s.sync(q.ctx)
	var all []*cand
	for _, p := range plans {
		all = append(all, s.collect(q, p, lq)...)
	}
	if lq.sortBy != "" {
		sortCands(all, lq.descending)
	}
	return s.pageOf(q, all, lq), nil
}

// sortKey is the value a resource is sorted by (RFC 7644 §3.4.2.3): for a
// multi-valued attribute the primary value, or else the first one.
func sortKey(k resourceKind, doc map[string]any, p filter.AttributePath) (string, bool) {
	urn, a := lookupAttr(k, p.URI(), p.AttributeName)
	if a == nil {
		return "", false
	}
	src := doc
	if urn != "" {
		src, _ = doc[urn].(map[string]any)
	}
	v := getFold(src, a.Name)
	if a.Multi {
		list := asList(v)
		v = nil
		for _, el := range list {
			if m, ok := el.(map[string]any); ok && getFold(m, "primary") == true {
				v = el
				break
			}
		}
		if v == nil && len(list) > 0 {
			v = list[0]
		}
	}
	if m, ok := v.(map[string]any); ok {
		sub := "value"
		if p.SubAttribute != nil {
			sub = *p.SubAttribute
		}
		v = getFold(m, sub)
	}
	switch x := v.(type) {
	case string:
		return x, x != ""
	case bool, json.Number:
		return jsonText(x), true
	}
	return "", false
}

// candidates returns the resources a filter can match, in the default
// order (creation time, then id). `userName eq`, `externalId eq`,
// `displayName eq`, `id eq` and the Discord userId are answered from an
// index in O(1).
func (s *Service) candidates(tenant string, k resourceKind, expr filter.Expression) []*cand {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	t := s.view.tenant(tenant)
	if t == nil {
		return nil
	}
	var ids []string
	indexed := false
	if name, val, ok := indexedEq(k, pickIndexed(k, expr)); ok {
		indexed = true
		switch {
		case name == "id":
			ids = []string{val}
		case k == kindUser && name == "userName":
			if id, ok := t.userByName[lower(val)]; ok {
				ids = []string{id}
			}
		case k == kindUser && name == "externalId":
			for id := range t.userByExt[val] {
				ids = append(ids, id)
			}
		case k == kindUser && name == "discord":
			if id, ok := t.userByDisc[val]; ok {
				ids = []string{id}
			}
		case k == kindGroup && name == "displayName":
			if id, ok := t.groupByName[lower(val)]; ok {
				ids = []string{id}
			}
		case k == kindGroup && name == "members.value":
			if t.users[val] != nil {
				for id := range t.userGroups[val] {
					ids = append(ids, id)
				}
			}
		case k == kindGroup && name == "externalId":
			for id := range t.groupByExt[val] {
				ids = append(ids, id)
			}
		default:
			indexed = false
		}
	}
	var out []*cand
	if k == kindUser {
		if indexed {
			for _, id := range ids {
				if u := t.users[id]; u != nil {
					out = append(out, &cand{id: id, created: u.created, user: u})
				}
			}
		} else {
			out = make([]*cand, 0, len(t.users))
			for id, u := range t.users {
				out = append(out, &cand{id: id, created: u.created, user: u})
			}
		}
	} else {
		if indexed {
			for _, id := range ids {
				if g := t.groups[id]; g != nil {
					out = append(out, &cand{id: id, created: g.created, group: g})
				}
			}
		} else {
			out = make([]*cand, 0, len(t.groups))
			for id, g := range t.groups {
				out = append(out, &cand{id: id, created: g.created, group: g})
			}
		}
	}
	slices.SortFunc(out, func(a, b *cand) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	return out
}

// pickIndexed returns an indexable `attr eq value` that the whole filter
// requires (the filter itself, or a conjunct of a top-level and).
func pickIndexed(k resourceKind, e filter.Expression) filter.Expression {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		return x
	case *filter.ValuePath:
		return x // members[value eq "id"]
	case *filter.LogicalExpression:
		if x.Operator != filter.AND {
			return nil
		}
		if _, _, ok := indexedEq(k, pickIndexed(k, x.Left)); ok {
			return pickIndexed(k, x.Left)
		}
		return pickIndexed(k, x.Right)
	}
	return nil
}
