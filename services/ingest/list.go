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
	id      string
	created time.Time
	user    *userRec
	group   *groupRec
	doc     map[string]any
}

// list answers a list or search request from the view.
func (s *Service) list(q *request, k resourceKind, lq listQuery) (map[string]any, error) {
	var expr filter.Expression
	if strings.TrimSpace(lq.filter) != "" {
		var err error
		expr, err = parseFilter(k, lq.filter)
		if err != nil {
			return nil, err
		}
	}
	var sortAttr *attr
	if lq.sortBy != "" {
		p, err := parseFilter(k, lq.sortBy+" pr")
		if err != nil {
			return nil, badRequest(scimInvalidValue, "sortBy %q is not an attribute", truncate(lq.sortBy, 100))
		}
		ae, _ := p.(*filter.AttributeExpression)
		if ae == nil {
			return nil, badRequest(scimInvalidValue, "sortBy %q is not an attribute", truncate(lq.sortBy, 100))
		}
		sortAttr, _ = resolvePath(k, ae.AttributePath, nil)
	}
	s.sync(q.ctx)
	tenant := q.tenant.ID
	cands := s.candidates(tenant, k, expr)
	withMembers := lq.proj.wants("members") || strings.Contains(strings.ToLower(lq.filter+" "+lq.sortBy), "members")
	render := func(c *cand) map[string]any {
		if c.doc == nil {
			if c.user != nil {
				c.doc = s.renderUser(tenant, c.user, q.base)
			} else {
				c.doc = s.renderGroupOpt(tenant, c.group, q.base, withMembers)
			}
		}
		return c.doc
	}
	if expr != nil {
		kept := cands[:0]
		for _, c := range cands {
			if evalFilter(k, expr, render(c), nil) {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	if sortAttr != nil {
		p, _ := parseFilter(k, lq.sortBy+" pr")
		path := p.(*filter.AttributeExpression).AttributePath
		keys := make(map[*cand]string, len(cands))
		for _, c := range cands {
			v := sortValue(valueAt(k, render(c), path, nil))
			if !sortAttr.CaseExact {
				v = strings.ToLower(v)
			}
			keys[c] = v
		}
		slices.SortStableFunc(cands, func(a, b *cand) int {
			ka, kb := keys[a], keys[b]
			if (ka == "") != (kb == "") { // missing values last (RFC 7644 §3.4.2.3)
				if ka == "" {
					return 1
				}
				return -1
			}
			c := strings.Compare(ka, kb)
			if lq.descending {
				c = -c
			}
			if c == 0 {
				c = cmp.Compare(a.id, b.id)
			}
			return c
		})
	}
	total := len(cands)
	si := max(lq.startIndex, 1)
	cnt := min(max(lq.count, 0), s.cfg.MaxResults)
	res := []any{}
	for i := si - 1; i >= 0 && i < total && len(res) < cnt; i++ {
		res = append(res, lq.proj.apply(k, render(cands[i])))
	}
	return map[string]any{
		"schemas":      []string{schemaListResp},
		"totalResults": total,
		"startIndex":   si,
		"itemsPerPage": len(res),
		"Resources":    res,
	}, nil
}

func sortValue(v any) string {
	for _, e := range asList(v) {
		if m, ok := e.(map[string]any); ok {
			e = m["value"]
		}
		switch x := e.(type) {
		case string:
			return x
		case bool, json.Number:
			return jsonText(x)
		}
	}
	return ""
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
			if id, ok := t.userByName[strings.ToLower(val)]; ok {
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
			if id, ok := t.groupByName[strings.ToLower(val)]; ok {
				ids = []string{id}
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
