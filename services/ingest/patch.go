package ingest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchOp is one PATCH operation (RFC 7644 §3.5.2).
type patchOp struct {
	Op    string // add, replace or remove (lower-cased)
	Path  string
	Value any
	// expanded: the operation is one key of a no-path operation's value
	// (read-only keys there are ignored, as in a PUT body).
	expanded bool
}

// maxPatchOps bounds the operations of one PATCH request.
const maxPatchOps = 10000

// parsePatch reads a PatchOp request body.
func parsePatch(body map[string]any) ([]patchOp, error) {
	raw := getFold(body, "Operations")
	list, ok := raw.([]any)
	if !ok || len(list) == 0 {
		return nil, badRequest(scimInvalidSyntax, "PATCH body needs a non-empty Operations array")
	}
	if len(list) > maxPatchOps {
		return nil, errf(413, "", "at most %d operations per PATCH", maxPatchOps)
	}
	ops := make([]patchOp, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, badRequest(scimInvalidSyntax, "Operations[%d] must be an object", i)
		}
		opName, _ := getFold(m, "op").(string)
		// Dialect "capitalised op names" (Entra sends "Add", "Replace", "Remove").
		opName = strings.ToLower(strings.TrimSpace(opName))
		switch opName {
		case "add", "replace", "remove":
		default:
			return nil, badRequest(scimInvalidSyntax, "Operations[%d].op %q must be add, replace or remove", i, opName)
		}
		p, _ := getFold(m, "path").(string)
		p = strings.TrimSpace(p)
		v, hasValue := m["value"]
		if !hasValue {
			v, hasValue = getFold(m, "value"), getFold(m, "value") != nil
		}
		if opName == "remove" && p == "" && !hasValue {
			return nil, badRequest(scimNoTarget, "Operations[%d]: remove needs a path", i)
		}
		if opName != "remove" && !hasValue {
			return nil, badRequest(scimInvalidValue, "Operations[%d]: %s needs a value", i, opName)
		}
		ops = append(ops, patchOp{Op: opName, Path: p, Value: v})
	}
	return ops, nil
}

// expandNoPath turns an operation without path into one operation per
// attribute of its value. Dialect "no-path replace with dotted keys"
// (Entra): keys such as "name.givenName" and
// "urn:…:enterprise:2.0:User:department" are paths, not attribute names.
func expandNoPath(k resourceKind, op patchOp) ([]patchOp, error) {
	if op.Path != "" {
		return expandSchemaPath(k, op)
	}
	if op.Op == "remove" {
		return nil, badRequest(scimNoTarget, "remove needs a path")
	}
	m, ok := op.Value.(map[string]any)
	if !ok {
		return nil, badRequest(scimInvalidValue, "%s without path needs an object value", op.Op)
	}
	var out []patchOp
	for _, key := range noPathOrder(k, m) {
		v := m[key]
		if strings.EqualFold(key, "schemas") {
			continue
		}
		if ext := extensionByURN(k, key); ext != nil {
			sub, ok := v.(map[string]any)
			if !ok {
				return nil, badRequest(scimInvalidValue, "%s must be an object", ext.ID)
			}
			for _, sk := range noPathOrder(k, sub) {
				out = append(out, patchOp{Op: op.Op, Path: ext.ID + ":" + sk, Value: sub[sk], expanded: true})
			}
			continue
		}
		out = append(out, patchOp{Op: op.Op, Path: key, Value: v, expanded: true})
	}
	return out, nil
}

// expandSchemaPath handles a path that is a bare schema URN (Entra-style
// `"path": "urn:…:enterprise:2.0:User", "value": {"costCenter": "C"}`, or
// the core URN with core attributes): the value's attributes are applied
// as by an operation without path on that schema (RFC 7644 §3.5.2 paths
// name attributes; a schema URN is read as its whole set). remove of an
// extension URN removes every attribute of the extension; remove of the
// core URN is 400 noTarget (it would remove userName). Other paths pass
// through unchanged.
func expandSchemaPath(k resourceKind, op patchOp) ([]patchOp, error) {
	core, _ := schemasFor(k)
	ext := extensionByURN(k, op.Path)
	isCore := strings.EqualFold(op.Path, core.ID)
	if ext == nil && !isCore {
		return []patchOp{op}, nil
	}
	if op.Op == "remove" {
		if isCore {
			return nil, badRequest(scimNoTarget, "remove of the core schema %s needs an attribute path", core.ID)
		}
		out := make([]patchOp, 0, len(ext.Attrs))
		for _, a := range ext.Attrs {
			out = append(out, patchOp{Op: "remove", Path: ext.ID + ":" + a.Name})
		}
		return out, nil
	}
	v, ok := op.Value.(map[string]any)
	if !ok {
		return nil, badRequest(scimInvalidValue, "%s with path %s needs an object value", op.Op, truncate(op.Path, 200))
	}
	if ext != nil {
		v = map[string]any{ext.ID: v}
	}
	return expandNoPath(k, patchOp{Op: op.Op, Value: v})
}

// noPathOrder is the order in which the keys of a no-path value are
// applied: a parent before its dotted children (`name` before
// `name.givenName`, so the child is not overwritten by map order), core
// before extension keys, then by name — deterministic for overlapping keys.
func noPathOrder(k resourceKind, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	depth := func(key string) int {
		if extensionByURN(k, key) != nil {
			return -1 // a whole extension object is the parent of its flat keys
		}
		_, rest := splitURNPath(k, key)
		return strings.Count(rest, ".")
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(depth(a), depth(b)); c != 0 {
			return c
		}
		return cmp.Compare(strings.ToLower(a), strings.ToLower(b))
	})
	return keys
}

// parsedPath is a PATCH path resolved against the schema.
type parsedPath struct {
	urn    string // extension URN, "" for core
	a      *attr
	sub    *attr // sub-attribute (name.givenName, emails[…].value)
	filter filter.Expression
}

// parsePatchPath resolves a PATCH path; it returns nil (and no error) for a
// path naming an attribute this service does not keep, which is ignored
// like unknown attributes in a POST.
func parsePatchPath(k resourceKind, raw string) (*parsedPath, error) {
	urn, rest := splitURNPath(k, raw)
	if urn == "" && strings.Contains(rest, ":") {
		return nil, nil // an extension we do not know
	}
	p, err := parsePathSafe(rest)
	if err != nil {
		return nil, badRequest(scimInvalidPath, "cannot parse path %q", truncate(raw, 200))
	}
	_, a := lookupAttr(k, urn, p.AttributePath.AttributeName)
	if a != nil && a.Mutability == "readOnly" {
		// RFC 7644 §3.5.2: modifying a read-only attribute is a mutability
		// error (id, meta, a user's groups).
		return nil, badRequest(scimMutability, "%s is read-only and cannot be changed by PATCH", a.Name)
	}
	if a == nil || a.Mutability == "writeOnly" {
		return nil, nil
	}
	out := &parsedPath{a: a, filter: p.ValueExpression}
	if ext := extensionByURN(k, urn); ext != nil {
		out.urn = ext.ID
	}
	subName := p.AttributePath.SubAttributeName()
	if p.SubAttribute != nil {
		subName = *p.SubAttribute
	}
	if subName != "" {
		out.sub = a.sub(subName)
		if out.sub == nil {
			return nil, nil
		}
	}
	if out.filter != nil {
		if a.Type != tComplex || !a.Multi {
			return nil, badRequest(scimInvalidPath, "path %q filters an attribute that is not multi-valued", truncate(raw, 200))
		}
		if err := checkFilterAttrs(k, out.filter, a); err != nil {
			return nil, badRequest(scimInvalidPath, "invalid filter in path %q", truncate(raw, 200))
		}
	}
	return out, nil
}

func isMutability(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.ScimType == scimMutability
}

func parsePathSafe(s string) (p filter.Path, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = badRequest(scimInvalidPath, "cannot parse path")
		}
	}()
	return filter.ParsePath([]byte(s))
}

// applyPatch applies ops to a resource document (users, and group
// attributes other than members).
func applyPatch(k resourceKind, doc map[string]any, ops []patchOp) error {
	for _, op := range ops {
		exp, err := expandNoPath(k, op)
		if err != nil {
			return err
		}
		for _, o := range exp {
			pp, err := parsePatchPath(k, o.Path)
			if o.expanded && isMutability(err) {
				continue // read-only keys of a no-path value: ignored
			}
			if err != nil {
				return err
			}
			if pp == nil {
				continue
			}
			if err := applyPath(k, doc, o, pp); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyPath(k resourceKind, doc map[string]any, op patchOp, pp *parsedPath) error {
	c := doc
	if pp.urn != "" {
		c, _ = doc[pp.urn].(map[string]any)
		if c == nil {
			if op.Op == "remove" {
				return nil
			}
			c = map[string]any{}
			doc[pp.urn] = c
		}
	}
	a := pp.a
	if pp.filter != nil {
		return applyFiltered(k, c, op, pp)
	}
	if pp.sub != nil {
		if a.Multi {
			for _, el := range asList(c[a.Name]) {
				if m, ok := el.(map[string]any); ok {
					if op.Op == "remove" {
						delete(m, pp.sub.Name)
					} else {
						m[pp.sub.Name] = op.Value
					}
				}
			}
			return nil
		}
		m, _ := c[a.Name].(map[string]any)
		if op.Op == "remove" {
			if m != nil {
				delete(m, pp.sub.Name)
			}
			return nil
		}
		if m == nil {
			m = map[string]any{}
			c[a.Name] = m
		}
		m[pp.sub.Name] = op.Value
		return nil
	}
	switch op.Op {
	case "remove":
		if a.Multi && op.Value != nil {
			// Dialect "remove with a value array" (Entra): remove the listed values.
			nv, err := normalizeValue(pp.urn, a, op.Value)
			if err != nil {
				return err
			}
			var keep []any
			for _, el := range asList(c[a.Name]) {
				if !containsEqual(asList(nv), el) {
					keep = append(keep, el)
				}
			}
			c[a.Name] = keep
			return nil
		}
		delete(c, a.Name)
	case "add":
		nv, err := normalizeValue(pp.urn, a, op.Value)
		if err != nil {
			return err
		}
		if a.Multi {
			list := asList(c[a.Name])
			if a.sub("primary") != nil && countPrimary(asList(nv)) > 0 {
				clearPrimary(list, func(int) bool { return false }) // the added value is the new primary
			}
			for _, el := range asList(nv) {
				if !containsEqual(list, el) {
					list = append(list, el)
				}
			}
			c[a.Name] = list
			return nil
		}
		if a.Type == tComplex {
			mergeInto(c, a.Name, nv)
			return nil
		}
		c[a.Name] = nv
	case "replace":
		nv, err := normalizeValue(pp.urn, a, op.Value)
		if err != nil {
			return err
		}
		if a.Type == tComplex && !a.Multi {
			mergeInto(c, a.Name, nv)
			return nil
		}
		c[a.Name] = nv
	}
	return nil
}

// mergeInto replaces the given sub-attributes of a complex attribute and
// keeps the others (RFC 7644 §3.5.2.3).
func mergeInto(c map[string]any, name string, nv any) {
	src, ok := nv.(map[string]any)
	if !ok {
		delete(c, name)
		return
	}
	dst, _ := c[name].(map[string]any)
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range src {
		dst[k] = v
	}
	c[name] = dst
}

// applyFiltered applies an operation on `attr[filter]` or
// `attr[filter].sub`.
func applyFiltered(k resourceKind, c map[string]any, op patchOp, pp *parsedPath) error {
	a := pp.a
	list := asList(c[a.Name])
	matched := false
	var out []any
	var touched []bool // parallel to out: the values this operation wrote
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok || !evalFilter(k, pp.filter, m, a) {
			out = append(out, el)
			touched = append(touched, false)
			continue
		}
		matched = true
		switch {
		case op.Op == "remove" && pp.sub == nil:
			continue // drop the element
		case op.Op == "remove":
			delete(m, pp.sub.Name)
		case pp.sub != nil:
			m[pp.sub.Name] = op.Value
		case op.Op == "replace":
			nv, err := normalizeSingle("", a, op.Value)
			if err != nil {
				return err
			}
			if nm, ok := nv.(map[string]any); ok {
				el = nm
			}
		default: // add with a filter and no sub-attribute: merge
			if nm, ok := op.Value.(map[string]any); ok {
				for kk, vv := range nm {
					m[kk] = vv
				}
			}
		}
		out = append(out, el)
		touched = append(touched, true)
	}
	if !matched && op.Op != "remove" {
		// Dialect "filter that matches nothing creates the element" (Entra:
		// `replace emails[type eq "work"].value` on a user with no work
		// e-mail). Only for a simple `sub eq "literal"` filter.
		x, ok := pp.filter.(*filter.AttributeExpression)
		if !ok || x.Operator != filter.EQ || x.AttributePath.SubAttribute != nil {
			return badRequest(scimNoTarget, "no value of %s matches the path filter", a.Name)
		}
		el := map[string]any{x.AttributePath.AttributeName: x.CompareValue}
		if pp.sub != nil {
			el[pp.sub.Name] = op.Value
		} else if nm, ok := op.Value.(map[string]any); ok {
			for kk, vv := range nm {
				el[kk] = vv
			}
		}
		out = append(out, el)
		touched = append(touched, true)
	}
	if op.Op != "remove" && a.sub("primary") != nil {
		// A value this operation made primary takes the flag from the
		// others (RFC 7644 §3.5.2.1).
		for i, el := range out {
			if touched[i] && isPrimary(el) {
				clearPrimary(out, func(j int) bool { return touched[j] })
				break
			}
		}
	}
	c[a.Name] = out
	return nil
}

func containsEqual(list []any, v any) bool {
	for _, e := range list {
		if jsonEqual(e, v) {
			return true
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// applyGroupPatch applies ops to a group: attribute changes go to doc,
// member changes to the returned delta (one record per member, so a change
// costs O(changed members)). members loads the current member set.
func applyGroupPatch(doc map[string]any, ops []patchOp, members func() map[string]bool) (*memberDelta, error) {
	var delta *memberDelta
	var cur map[string]bool
	loadCur := func() map[string]bool {
		if cur == nil {
			cur = members()
		}
		return cur
	}
	for _, op := range ops {
		exp, err := expandNoPath(kindGroup, op)
		if err != nil {
			return nil, err
		}
		for _, o := range exp {
			pp, err := parsePatchPath(kindGroup, o.Path)
			if o.expanded && isMutability(err) {
				continue // read-only keys of a no-path value: ignored
			}
			if err != nil {
				return nil, err
			}
			if pp == nil {
				continue
			}
			if pp.a.Name != "members" {
				if err := applyPath(kindGroup, doc, o, pp); err != nil {
					return nil, err
				}
				continue
			}
			if pp.sub != nil {
				// members.display, members[value eq "x"].type, …: a member's
				// value, $ref and type are immutable and its display is
				// read-only (RFC 7643 §4.2), so no operation on a
				// sub-attribute path may change — or remove — a membership
				// (RFC 7644 §3.5.2: 400 mutability). A member is removed
				// with `members[value eq "id"]` or a value array.
				return nil, badRequest(scimMutability, "members.%s cannot be changed by PATCH; %s the member itself with path members or members[value eq \"<id>\"]", pp.sub.Name, o.Op)
			}
			if delta == nil {
				delta = &memberDelta{set: map[string]bool{}}
			}
			refs, err := memberIDs(o.Value)
			if err != nil {
				return nil, err
			}
			switch {
			case pp.filter != nil && o.Op == "remove":
				if id, ok := simpleValueEq(pp.filter); ok {
					delta.put(id, false)
					continue
				}
				for _, u := range effectiveMembers(delta, loadCur()) {
					if evalFilter(kindGroup, pp.filter, map[string]any{"value": u, "type": "User"}, pp.a) {
						delta.put(u, false)
					}
				}
			case pp.filter != nil:
				// replace/add on members[filter]: the matching members are
				// replaced by the given ones.
				for _, u := range effectiveMembers(delta, loadCur()) {
					if evalFilter(kindGroup, pp.filter, map[string]any{"value": u, "type": "User"}, pp.a) {
						delta.put(u, false)
					}
				}
				for _, r := range refs {
					delta.putRef(r)
				}
			case o.Op == "add":
				for _, r := range refs {
					delta.putRef(r)
				}
			case o.Op == "replace":
				delta.replace = true
				delta.set = map[string]bool{}
				for _, r := range refs {
					delta.putRef(r)
				}
			case o.Op == "remove" && o.Value != nil:
				// Dialect "remove members with a value array" (Entra).
				for _, r := range refs {
					delta.put(r.id, false)
				}
			default: // remove all members
				delta.replace = true
				delta.set = map[string]bool{}
			}
		}
	}
	return delta, nil
}

func effectiveMembers(d *memberDelta, cur map[string]bool) []string {
	var out []string
	if !d.replace {
		for u := range cur {
			if m, ok := d.set[u]; !ok || m {
				out = append(out, u)
			}
		}
	}
	for u, m := range d.set {
		if m && (d.replace || !cur[u]) {
			out = append(out, u)
		}
	}
	return out
}

// simpleValueEq recognises `value eq "id"`.
func simpleValueEq(e filter.Expression) (string, bool) {
	x, ok := e.(*filter.AttributeExpression)
	if !ok || x.Operator != filter.EQ || !strings.EqualFold(x.AttributePath.AttributeName, "value") || x.AttributePath.SubAttribute != nil {
		return "", false
	}
	s, ok := x.CompareValue.(string)
	return unescapeFilterString(s), ok
}

// maxMemberDisplay bounds the display an IdP sends for a member (it is kept
// with each membership and rendered with the group: unbounded, a big group
// would render gigabytes).
const maxMemberDisplay = 1024

func checkMemberDisplay(d string) error {
	if len(d) > maxMemberDisplay {
		return badRequest(scimInvalidValue, "a member display is %d bytes; the limit is %d", len(d), maxMemberDisplay)
	}
	return nil
}

// memberRef is a member named in a request.
type memberRef struct{ id, display string }

// memberIDs reads members from a PATCH value: a list of {"value": id}, a
// single object, or bare id strings. The display is "display", or
// "displayName" as Microsoft's collection sends it.
func memberIDs(v any) ([]memberRef, error) {
	var ids []memberRef
	for _, e := range asList(v) {
		switch x := e.(type) {
		case map[string]any:
			id, ok := getFold(x, "value").(string)
			if !ok {
				return nil, badRequest(scimInvalidValue, "each member needs a string value")
			}
			d, _ := getFold(x, "display").(string)
			if d == "" {
				d, _ = getFold(x, "displayName").(string)
			}
			if err := checkMemberDisplay(d); err != nil {
				return nil, err
			}
			ids = append(ids, memberRef{id: id, display: d})
		case string:
			ids = append(ids, memberRef{id: x})
		default:
			return nil, badRequest(scimInvalidValue, "members must be objects with a value")
		}
	}
	return ids, nil
}
