package admin

import (
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// RulesApplyRequest is the body of /admin/api/v1/rules/apply: a rules file
// (the SCIMCORD_MAPPING shape, tenants → guilds → rules, or one guild's
// `rules:` with Guild), previewed and — unless DryRun — stored with a
// compare-and-set on the version the preview saw.
type RulesApplyRequest struct {
	YAML   string `json:"yaml"`
	Guild  string `json:"guild,omitempty"`
	DryRun bool   `json:"dry_run"`
}

// RulesApplyResult is the answer: one entry per guild.
type RulesApplyResult struct {
	Tenant string            `json:"tenant"`
	DryRun bool              `json:"dry_run"`
	Guilds []GuildRulesApply `json:"guilds"`
}

// GuildRulesApply is the preview (mapping.v1.PreviewResponse) and outcome of one guild.
type GuildRulesApply struct {
	Guild   string `json:"guild"`
	Preview any    `json:"preview"`
	Applied bool   `json:"applied"`
	Version uint64 `json:"version"` // 0 on a dry run
}

// splitRules returns the rule-set YAML of each guild of t in a rules file.
func splitRules(t *tenants.Tenant, doc, guild string) (map[string]string, error) {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &top); err != nil {
		return nil, badRequest("rules file: %v", err)
	}
	out := map[string]string{}
	if tn, ok := top["tenants"]; ok {
		var file struct {
			Tenants []struct {
				ID     string `yaml:"id"`
				Guilds []struct {
					ID    string    `yaml:"id"`
					Rules yaml.Node `yaml:"rules"`
				} `yaml:"guilds"`
			} `yaml:"tenants"`
		}
		if err := tn.Decode(&file.Tenants); err != nil {
			return nil, badRequest("rules file: tenants: %v", err)
		}
		for _, ft := range file.Tenants {
			if ft.ID != t.ID {
				continue
			}
			for _, g := range ft.Guilds {
				if guild != "" && g.ID != guild {
					continue
				}
				data, err := yaml.Marshal(map[string]*yaml.Node{"rules": &g.Rules})
				if err != nil {
					return nil, badRequest("rules file: guild %s: %v", g.ID, err)
				}
				out[g.ID] = string(data)
			}
		}
		if len(out) == 0 {
			return nil, badRequest("rules file has no rules for tenant %q%s", t.ID, map[bool]string{true: " guild " + guild}[guild != ""])
		}
		return out, nil
	}
	if _, ok := top["rules"]; !ok {
		return nil, badRequest("rules file: want `tenants:` (the SCIMCORD_MAPPING shape) or `rules:` with a guild")
	}
	if guild == "" && len(t.Guilds) == 1 {
		guild = t.Guilds[0].ID
	}
	if guild == "" {
		return nil, badRequest("a `rules:` file needs a guild (tenant %q has several)", t.ID)
	}
	out[guild] = doc
	return out, nil
}

func (s *Server) apiRulesApply(r *http.Request) (any, error) {
	ctx := r.Context()
	if s.deps.Mapping == nil {
		return nil, unavailable("mapping is not configured (SCIMCORD_MAPPING_ADDR)")
	}
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	var req RulesApplyRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.YAML) == "" {
		return nil, badRequest("yaml is empty")
	}
	sets, err := splitRules(t, req.YAML, req.Guild)
	if err != nil {
		return nil, err
	}
	res := RulesApplyResult{Tenant: t.ID, DryRun: req.DryRun}
	for _, g := range t.Guilds {
		doc, ok := sets[g.ID]
		if !ok {
			continue
		}
		delete(sets, g.ID)
		pv, err := s.deps.Mapping.Preview(ctx, &mappingv1.PreviewRequest{TenantId: t.ID, GuildId: g.ID, Yaml: doc})
		if err != nil {
			return nil, grpcError("preview of guild "+g.ID, err)
		}
		out := GuildRulesApply{Guild: g.ID, Preview: protoJSON(pv)}
		if !req.DryRun {
			put, err := s.deps.Mapping.PutRuleSet(ctx, &mappingv1.PutRuleSetRequest{TenantId: t.ID, GuildId: g.ID, Yaml: doc, ExpectedVersion: pv.GetCurrentVersion()})
			if err != nil {
				return nil, grpcError("put rule set of guild "+g.ID, err)
			}
			out.Applied, out.Version = true, put.GetRuleSet().GetVersion()
		}
		res.Guilds = append(res.Guilds, out)
	}
	for id := range sets {
		return nil, badRequest("guild %q is not driven by tenant %q", id, t.ID)
	}
	return res, nil
}
