package ingest

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// bulkOp is one operation of a BulkRequest (RFC 7644 §3.7).
type bulkOp struct {
	method, bulkID, path, version string
	data                          any
	err                           error // refused before running (a duplicate bulkId)
}

// handleBulk is POST /Bulk: operations run in order; an operation that
// refers to a bulkId not created yet waits until it is (RFC 7644 §3.7.2);
// failOnErrors stops the run after that many errors.
func (s *Service) handleBulk(q *request) {
	body, err := s.readBody(q, s.cfg.BulkMaxPayload)
	if err != nil {
		s.writeError(q, err)
		return
	}
	rawOps, ok := getFold(body, "Operations").([]any)
	if !ok {
		s.writeError(q, badRequest(scimInvalidSyntax, "BulkRequest needs an Operations array"))
		return
	}
	if len(rawOps) > s.cfg.BulkMaxOperations {
		s.writeError(q, errf(http.StatusRequestEntityTooLarge, "", "at most %d bulk operations per request", s.cfg.BulkMaxOperations))
		return
	}
	failOn := 0
	if f := getFold(body, "failOnErrors"); f != nil {
		n, err := strconv.Atoi(strings.Trim(jsonText(f), `"`))
		if err != nil || n < 0 {
			s.writeError(q, badRequest(scimInvalidValue, "failOnErrors must be a non-negative integer"))
			return
		}
		failOn = n
	}
	ops := make([]bulkOp, 0, len(rawOps))
	seenBulkIDs := map[string]struct{}{}
	for i, r := range rawOps {
		m, ok := r.(map[string]any)
		if !ok {
			s.writeError(q, badRequest(scimInvalidSyntax, "Operations[%d] must be an object", i))
			return
		}
		op := bulkOp{data: getFold(m, "data")}
		op.method, _ = getFold(m, "method").(string)
		op.bulkID, _ = getFold(m, "bulkId").(string)
		op.path, _ = getFold(m, "path").(string)
		op.version, _ = getFold(m, "version").(string)
		op.method = strings.ToUpper(op.method)
		if op.method == http.MethodPost && op.bulkID == "" {
			s.writeError(q, badRequest(scimInvalidValue, "Operations[%d]: POST needs a bulkId", i))
			return
		}
		if op.bulkID != "" {
			if _, dup := seenBulkIDs[op.bulkID]; dup {
				// RFC 7644 §3.7: a bulkId identifies one operation; a second
				// one would make references ambiguous.
				op.err = badRequest(scimInvalidValue, "bulkId %q is already used by an earlier operation of this request", truncate(op.bulkID, 100))
			}
			seenBulkIDs[op.bulkID] = struct{}{}
		}
		ops = append(ops, op)
	}
	ids := map[string]string{} // bulkId → created id
	results := make([]map[string]any, len(ops))
	done := make([]bool, len(ops))
	errorsSeen := 0
	for progress := true; progress; {
		progress = false
		for i, op := range ops {
			if done[i] || (failOn > 0 && errorsSeen >= failOn) {
				continue
			}
			if op.err != nil {
				done[i], progress = true, true
				results[i] = bulkFailure(op, op.err)
				errorsSeen++
				continue
			}
			data, path, ok := resolveBulkIDs(op, ids)
			if !ok {
				continue // waits for another operation's bulkId
			}
			done[i], progress = true, true
			res := s.bulkOne(q, op, path, data, ids)
			if st, _ := strconv.Atoi(res["status"].(string)); st >= 400 {
				errorsSeen++
			}
			results[i] = res
		}
	}
	out := []any{}
	for i, op := range ops {
		res := results[i]
		if res == nil {
			if failOn > 0 && errorsSeen >= failOn {
				continue // not run: failOnErrors reached
			}
			e := errf(http.StatusConflict, "", "operation refers to a bulkId that no operation created (or a circular reference)")
			res = map[string]any{"method": op.method, "status": "409", "response": errorBody(e)}
			if op.bulkID != "" {
				res["bulkId"] = op.bulkID
			}
		}
		out = append(out, res)
	}
	s.writeJSON(q, http.StatusOK, map[string]any{"schemas": []string{schemaBulkResp}, "Operations": out})
}

// resolveBulkIDs replaces "bulkId:<id>" references in the path and data;
// ok is false while a referenced bulkId is not created yet. In data only
// values that name a resource are references (RFC 7644 §3.7.2): the
// "value" or "$ref" of an object (members, manager) and a bare member id
// in a "members" list; any other string starting with "bulkId:" is data.
func resolveBulkIDs(op bulkOp, ids map[string]string) (any, string, bool) {
	ok := true
	ref := func(x string) string {
		if r, isRef := strings.CutPrefix(x, "bulkId:"); isRef {
			if id, found := ids[r]; found {
				return id
			}
			ok = false
		}
		return x
	}
	// refCtx: v names a resource (a member or the manager).
	var walk func(v any, refCtx bool) any
	walk = func(v any, refCtx bool) any {
		switch x := v.(type) {
		case string:
			if refCtx {
				return ref(x)
			}
			return x
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e, refCtx)
			}
			return out
		case map[string]any:
			patchPath, isPatchOp := "", getFold(x, "op") != nil
			if isPatchOp {
				patchPath, _ = getFold(x, "path").(string)
			}
			out := make(map[string]any, len(x))
			for k, e := range x {
				var child bool
				switch {
				case isPatchOp && strings.EqualFold(k, "value"):
					child = isRefAttr(strings.TrimSpace(patchPath))
				case isPatchOp:
					child = false
				default:
					child = isRefAttr(k) || refCtx && (strings.EqualFold(k, "value") || strings.EqualFold(k, "$ref"))
				}
				out[k] = walk(e, child)
			}
			return out
		}
		return v
	}
	data := walk(op.data, false)
	parts := strings.Split(op.path, "/")
	for i, p := range parts {
		parts[i] = ref(p)
	}
	return data, strings.Join(parts, "/"), ok
}

// isRefAttr reports whether an attribute name or PATCH path names
// resources: members (members, members[…]) or the enterprise manager.
func isRefAttr(p string) bool {
	l := strings.ToLower(p)
	return strings.HasPrefix(l, "members") || l == "manager" || strings.HasSuffix(l, ":manager") || strings.HasPrefix(l, "manager.") || strings.Contains(l, ":manager.")
}

// bulkFailure is the result entry of an operation that failed with err.
func bulkFailure(op bulkOp, err error) map[string]any {
	e := toSCIM(err)
	res := map[string]any{"method": op.method, "status": strconv.Itoa(e.Status), "response": errorBody(e)}
	if op.bulkID != "" {
		res["bulkId"] = op.bulkID
	}
	return res
}

// bulkOne runs one bulk operation and returns its result entry.
func (s *Service) bulkOne(q *request, op bulkOp, path string, data any, ids map[string]string) map[string]any {
	res := map[string]any{"method": op.method}
	if op.bulkID != "" {
		res["bulkId"] = op.bulkID
	}
	fail := func(err error) map[string]any {
		e := toSCIM(err)
		res["status"] = strconv.Itoa(e.Status)
		res["response"] = errorBody(e)
		return res
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var k resourceKind
	switch strings.ToLower(segs[0]) {
	case "users":
		k = kindUser
	case "groups":
		k = kindGroup
	default:
		return fail(errf(http.StatusNotFound, scimInvalidPath, "bulk path %q is not /Users or /Groups", truncate(path, 100)))
	}
	switch op.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		// GET (or anything else) is not a Bulk operation (RFC 7644 §3.7).
		return fail(errf(http.StatusMethodNotAllowed, "", "bulk method %q is not supported; use POST, PUT, PATCH or DELETE", truncate(op.method, 20)))
	}
	ctx := q.ctx
	tenant := q.tenant.ID
	body, _ := data.(map[string]any)
	if body == nil && op.method != http.MethodDelete {
		return fail(badRequest(scimInvalidSyntax, "bulk %s needs a data object", op.method))
	}
	if op.method == http.MethodPost {
		if len(segs) != 1 {
			return fail(badRequest(scimInvalidPath, "bulk POST path must be /Users or /Groups"))
		}
		doc, loc, err := s.create(ctx, tenant, k, body, q.base)
		if err != nil {
			return fail(err)
		}
		ids[op.bulkID] = doc["id"].(string)
		res["status"] = "201"
		res["location"] = loc
		res["version"] = getMeta(doc, "version")
		return res
	}
	if len(segs) != 2 {
		return fail(badRequest(scimInvalidPath, "bulk %s path must name a resource", op.method))
	}
	id := segs[1]
	ifm := op.version
	var doc map[string]any
	var err error
	switch op.method {
	case http.MethodPut:
		doc, err = s.replaceAny(ctx, tenant, k, id, ifm, body, q.base)
	case http.MethodPatch:
		var ops []patchOp
		ops, err = parsePatch(body)
		if err == nil {
			doc, err = s.patchAny(ctx, tenant, k, id, ifm, ops, q.base)
		}
	case http.MethodDelete:
		if k == kindUser {
			err = s.deleteUser(ctx, tenant, id, ifm)
		} else {
			err = s.deleteGroup(ctx, tenant, id, ifm)
		}
		if err == nil {
			res["status"] = "204"
			res["location"] = q.base + "/" + kindName(k) + "s/" + id
			return res
		}
	default:
		err = errf(http.StatusMethodNotAllowed, "", "bulk method %q is not supported", truncate(op.method, 20))
	}
	if err != nil {
		return fail(err)
	}
	res["status"] = "200"
	res["location"] = q.base + "/" + kindName(k) + "s/" + id
	res["version"] = getMeta(doc, "version")
	return res
}

func (s *Service) replaceAny(ctx context.Context, tenant string, k resourceKind, id, ifm string, body map[string]any, base string) (map[string]any, error) {
	if k == kindUser {
		u, err := s.replaceUser(ctx, tenant, id, ifm, body)
		if err != nil {
			return nil, err
		}
		return s.renderUser(tenant, u, base), nil
	}
	g, err := s.replaceGroup(ctx, tenant, id, ifm, body)
	if err != nil {
		return nil, err
	}
	return s.renderGroup(tenant, g, base), nil
}

func (s *Service) patchAny(ctx context.Context, tenant string, k resourceKind, id, ifm string, ops []patchOp, base string) (map[string]any, error) {
	if k == kindUser {
		u, err := s.patchUser(ctx, tenant, id, ifm, ops)
		if err != nil {
			return nil, err
		}
		return s.renderUser(tenant, u, base), nil
	}
	g, err := s.patchGroup(ctx, tenant, id, ifm, ops)
	if err != nil {
		return nil, err
	}
	return s.renderGroup(tenant, g, base), nil
}
