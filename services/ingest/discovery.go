package ingest

import (
	"net/http"
	"strings"
)

// serviceProviderConfig advertises exactly what this server does
// (RFC 7643 §5).
func (s *Service) serviceProviderConfig(q *request) map[string]any {
	return map[string]any{
		"schemas":          []string{schemaSPC},
		"documentationUri": "https://github.com/scimcord/scimcord#connect-okta",
		"patch":            map[string]any{"supported": true},
		"bulk": map[string]any{
			"supported":      true,
			"maxOperations":  s.cfg.BulkMaxOperations,
			"maxPayloadSize": s.cfg.BulkMaxPayload,
		},
		"filter":         map[string]any{"supported": true, "maxResults": s.cfg.MaxResults},
		"changePassword": map[string]any{"supported": false},
		"sort":           map[string]any{"supported": true},
		"etag":           map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "Authentication with a per-tenant bearer token (Authorization: Bearer <token>).",
			"specUri":     "https://www.rfc-editor.org/rfc/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{
			"resourceType": "ServiceProviderConfig",
			"location":     q.base + "/ServiceProviderConfig",
		},
	}
}

func resourceTypes(base string) []any {
	return []any{
		map[string]any{
			"schemas":     []string{schemaResType},
			"id":          "User",
			"name":        "User",
			"endpoint":    "/Users",
			"description": "User Account",
			"schema":      SchemaUser,
			"schemaExtensions": []any{
				map[string]any{"schema": SchemaEnterprise, "required": false},
				map[string]any{"schema": SchemaDiscord, "required": false},
			},
			"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/User"},
		},
		map[string]any{
			"schemas":     []string{schemaResType},
			"id":          "Group",
			"name":        "Group",
			"endpoint":    "/Groups",
			"description": "Group",
			"schema":      SchemaGroup,
			"meta":        map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/Group"},
		},
	}
}

// refuseDiscoveryFilter answers a filter on /Schemas or /ResourceTypes
// 403 (RFC 7644 §4: "If a 'filter' is provided, the service provider
// SHOULD respond with HTTP status code 403 (Forbidden)"); it reports
// whether it did.
func (s *Service) refuseDiscoveryFilter(q *request, endpoint string) bool {
	if !q.r.URL.Query().Has("filter") {
		return false
	}
	s.writeError(q, errf(http.StatusForbidden, "", "%s does not support filtering (RFC 7644 §4)", endpoint))
	return true
}

func (s *Service) handleResourceTypes(q *request, rest []string) {
	if s.refuseDiscoveryFilter(q, "/ResourceTypes") {
		return
	}
	all := resourceTypes(q.base)
	if len(rest) == 0 {
		s.writeJSON(q, http.StatusOK, page(all, listQuery{startIndex: 1, count: len(all)}, len(all)))
		return
	}
	for _, rt := range all {
		if strings.EqualFold(rt.(map[string]any)["id"].(string), rest[0]) && len(rest) == 1 {
			s.writeJSON(q, http.StatusOK, rt)
			return
		}
	}
	s.writeError(q, notFound("ResourceType", rest[0]))
}

func attrJSON(a *attr) map[string]any {
	m := map[string]any{
		"name":        a.Name,
		"type":        string(a.Type),
		"multiValued": a.Multi,
		"description": a.Description,
		"required":    a.Required,
		"caseExact":   a.CaseExact,
		"mutability":  def(a.Mutability, "readWrite"),
		"returned":    def(a.Returned, "default"),
		"uniqueness":  def(a.Uniqueness, "none"),
	}
	if len(a.RefTypes) > 0 {
		m["referenceTypes"] = a.RefTypes
	}
	if len(a.Canonical) > 0 {
		m["canonicalValues"] = a.Canonical
	}
	if len(a.Sub) > 0 {
		var subs []any
		for _, s := range a.Sub {
			subs = append(subs, attrJSON(s))
		}
		m["subAttributes"] = subs
	}
	return m
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func schemaJSON(sd *schemaDef, base string) map[string]any {
	var attrs []any
	for _, a := range sd.Attrs {
		attrs = append(attrs, attrJSON(a))
	}
	return map[string]any{
		"schemas":     []string{schemaSchema},
		"id":          sd.ID,
		"name":        sd.Name,
		"description": sd.Description,
		"attributes":  attrs,
		"meta":        map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + sd.ID},
	}
}

func (s *Service) handleSchemas(q *request, rest []string) {
	if s.refuseDiscoveryFilter(q, "/Schemas") {
		return
	}
	defs := []*schemaDef{userSchema, enterpriseSchema, discordSchema, groupSchema}
	if len(rest) == 0 {
		var all []any
		for _, d := range defs {
			all = append(all, schemaJSON(d, q.base))
		}
		s.writeJSON(q, http.StatusOK, page(all, listQuery{startIndex: 1, count: len(all)}, len(all)))
		return
	}
	id := strings.Join(rest, "/")
	for _, d := range defs {
		if strings.EqualFold(d.ID, id) {
			s.writeJSON(q, http.StatusOK, schemaJSON(d, q.base))
			return
		}
	}
	s.writeError(q, notFound("Schema", id))
}

// handleRoles is Okta's entitlements endpoint: the tenant's managed
// Discord roles, so that an IdP can assign them directly.
func (s *Service) handleRoles(q *request, rest []string) {
	var roles []Role
	if s.deps.Roles != nil {
		var err error
		roles, err = s.deps.Roles(q.ctx, q.tenant.ID)
		if err != nil {
			s.writeError(q, &Error{Status: http.StatusServiceUnavailable, Detail: "roles temporarily unavailable", Err: err})
			return
		}
	}
	var all []any
	for _, r := range roles {
		all = append(all, map[string]any{
			"schemas":     []string{"urn:okta:scim:schemas:core:1.0:Role"},
			"id":          r.ID,
			"displayName": r.Name,
			"value":       r.ID,
			"guildId":     r.GuildID,
		})
	}
	if len(rest) == 1 {
		for _, r := range all {
			if r.(map[string]any)["id"] == rest[0] {
				s.writeJSON(q, http.StatusOK, r)
				return
			}
		}
		s.writeError(q, notFound("Role", rest[0]))
		return
	}
	lq, err := s.parseListQuery(q.r.URL.Query())
	if err != nil {
		s.writeError(q, err)
		return
	}
	if all == nil {
		all = []any{}
	}
	s.writeJSON(q, http.StatusOK, page(all, lq, len(all)))
}
