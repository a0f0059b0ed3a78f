package mapping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// MaxBatch bounds the members of one ResolveRolesBatch call.
const MaxBatch = 10000

// server implements mappingv1.MappingServiceServer on a Service.
type server struct {
	mappingv1.UnimplementedMappingServiceServer
	s *Service
}

// errBadRequest marks request problems (→ InvalidArgument).
var errBadRequest = errors.New("bad request")

// checkUserJSON refuses a user_json that is not a JSON object: resolving it
// as "no CEL rule matches" would remove every role a CEL rule grants.
func checkUserJSON(b []byte) error {
	if err := rules.CheckUserJSON(b); err != nil {
		return fmt.Errorf("%w: user_json: %w", errBadRequest, err)
	}
	return nil
}

func checkMember(tenant, guild string) error {
	if !rules.ValidTenant(tenant) {
		return fmt.Errorf("%w: tenant_id %q: want 1-64 characters of A-Z a-z 0-9 _ = -", errBadRequest, tenant)
	}
	if !rules.ValidSnowflake(guild) {
		return fmt.Errorf("%w: guild_id %q: want a Discord snowflake (17-20 digits)", errBadRequest, guild)
	}
	return nil
}

func memberOf(req *mappingv1.ResolveRolesRequest) *rules.Member {
	m := &rules.Member{UserID: req.GetUserId(), Active: req.GetActive(), UserJSON: req.GetUserJson()}
	if n := len(req.GetGroups()); n > 0 {
		m.Groups = make([]rules.Group, n)
		for i, g := range req.GetGroups() {
			m.Groups[i] = rules.Group{ID: g.GetId(), ExternalID: g.GetExternalId(), DisplayName: g.GetDisplayName()}
		}
	}
	return m
}

// resolve answers one ResolveRoles request.
func (s *Service) resolve(ctx context.Context, req *mappingv1.ResolveRolesRequest) (*mappingv1.ResolveRolesResponse, error) {
	if err := checkMember(req.GetTenantId(), req.GetGuildId()); err != nil {
		s.metrics.resolveErrors.Add(1)
		return nil, err
	}
	if err := checkUserJSON(req.GetUserJson()); err != nil {
		s.metrics.resolveErrors.Add(1)
		return nil, err
	}
	select {
	case <-s.ready:
	default:
		// An empty answer would read as "nothing managed": say "not yet" instead.
		return nil, fmt.Errorf("resolve: rule sets not loaded yet: %w", ErrUnavailable)
	}
	s.metrics.resolves.Add(1)
	resp := &mappingv1.ResolveRolesResponse{UserId: req.GetUserId()}
	rs := s.rules.get(req.GetTenantId(), req.GetGuildId())
	if rs == nil {
		// No rule set: nothing is managed in this guild, so nothing changes.
		return resp, nil
	}
	resp.RulesVersion = rs.Version
	names := newNameResolver(req.GetGuildId(), req.GetGuildRoles())
	granted, err := rs.Resolve(ctx, memberOf(req))
	if err != nil {
		s.metrics.resolveErrors.Add(1)
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	resp.RoleIds, resp.RoleNames, _ = names.resolve(granted)
	resp.ManagedRoleIds, resp.ManagedRoleNames, resp.RoleNameProblems = names.resolve(rs.Managed())
	return resp, nil
}

// nameResolver resolves role names against the guild's roles, when given.
type nameResolver struct {
	given  bool
	byName map[string][]string
}

// newNameResolver indexes the guild's roles by name. The guild's default role
// (@everyone, whose id is the guild id) is never a match: it cannot be
// granted or removed, whatever it is called.
func newNameResolver(guildID string, roles []*mappingv1.GuildRole) *nameResolver {
	n := &nameResolver{given: len(roles) > 0}
	if n.given {
		n.byName = make(map[string][]string, len(roles))
		for _, r := range roles {
			if r.GetId() == guildID || rules.IsEveryone(r.GetName()) {
				continue
			}
			n.byName[r.GetName()] = append(n.byName[r.GetName()], r.GetId())
		}
	}
	return n
}

// lookup returns the id of the one role named name, or a problem.
func (n *nameResolver) lookup(name string) (string, *mappingv1.RoleNameProblem) {
	ids := n.byName[name]
	if len(ids) == 1 {
		return ids[0], nil
	}
	p := &mappingv1.RoleNameProblem{Name: name, MatchingRoleIds: slices.Sorted(slices.Values(ids))}
	if len(ids) == 0 {
		p.Problem = fmt.Sprintf("no role of the guild is named %q", name)
	} else {
		p.Problem = fmt.Sprintf("%d roles of the guild are named %q", len(ids), name)
	}
	return "", p
}

// resolve splits refs into sorted ids (names resolved when the guild's roles
// are given), sorted unresolved names (when they are not), and name problems.
func (n *nameResolver) resolve(refs []rules.RoleRef) (ids, names []string, problems []*mappingv1.RoleNameProblem) {
	ids = make([]string, 0, len(refs))
	for _, r := range refs {
		switch {
		case r.ID != "":
			ids = append(ids, r.ID)
		case !n.given:
			names = append(names, r.Name)
		default:
			if id, p := n.lookup(r.Name); p != nil {
				problems = append(problems, p)
			} else {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	slices.Sort(names)
	return ids, names, problems
}

// ResolveRoles implements MappingService.
func (h *server) ResolveRoles(ctx context.Context, req *mappingv1.ResolveRolesRequest) (*mappingv1.ResolveRolesResponse, error) {
	resp, err := h.s.resolve(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

// ResolveRolesBatch implements MappingService: all members or an error naming the bad one.
func (h *server) ResolveRolesBatch(ctx context.Context, req *mappingv1.ResolveRolesBatchRequest) (*mappingv1.ResolveRolesBatchResponse, error) {
	if n := len(req.GetMembers()); n > MaxBatch {
		return nil, grpcError(fmt.Errorf("%w: %d members, over the batch limit of %d", errBadRequest, n, MaxBatch))
	}
	out := &mappingv1.ResolveRolesBatchResponse{Results: make([]*mappingv1.ResolveRolesResponse, len(req.GetMembers()))}
	for i, m := range req.GetMembers() {
		r, err := h.s.resolve(ctx, m)
		if err != nil {
			return nil, grpcError(fmt.Errorf("members[%d]: %w", i, err))
		}
		out.Results[i] = r
	}
	return out, nil
}

// ResolveRolesStream implements MappingService: one answer per member, in order;
// a malformed member gets an error answer and the stream goes on.
func (h *server) ResolveRolesStream(stream mappingv1.MappingService_ResolveRolesStreamServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out := &mappingv1.ResolveRolesStreamResponse{}
		if r, err := h.s.resolve(ctx, req.GetMember()); err != nil {
			out.Error = err.Error()
		} else {
			out.Result = r
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// Explain implements MappingService.
func (h *server) Explain(ctx context.Context, req *mappingv1.ExplainRequest) (*mappingv1.ExplainResponse, error) {
	m := req.GetMember()
	h.s.metrics.explains.Add(1)
	result, err := h.s.resolve(ctx, m)
	if err != nil {
		return nil, grpcError(err)
	}
	out := &mappingv1.ExplainResponse{Result: result, RulesVersion: result.GetRulesVersion()}
	rs := h.s.rules.get(m.GetTenantId(), m.GetGuildId())
	if rs == nil {
		return out, nil
	}
	names := newNameResolver(m.GetGuildId(), m.GetGuildRoles())
	decisions, err := rs.Explain(ctx, memberOf(m))
	if err != nil {
		return nil, grpcError(fmt.Errorf("%w: %w", errBadRequest, err))
	}
	for _, d := range decisions {
		e := &mappingv1.RoleExplanation{Role: roleProto(d.Role), Granted: d.Granted}
		if d.Role.ID == "" && names.given {
			if id, p := names.lookup(d.Role.Name); p != nil {
				e.NameProblem = p.GetProblem()
				e.Granted = false
			} else {
				e.Role.Id = id
			}
		}
		for _, o := range d.Rules {
			e.Rules = append(e.Rules, &mappingv1.RuleOutcome{Rule: o.Rule, Matched: o.Matched, Reason: o.Reason})
		}
		out.Roles = append(out.Roles, e)
	}
	return out, nil
}

func roleProto(r rules.RoleRef) *mappingv1.Role { return &mappingv1.Role{Id: r.ID, Name: r.Name} }

func rolesProto(rs []rules.RoleRef) []*mappingv1.Role {
	out := make([]*mappingv1.Role, len(rs))
	for i, r := range rs {
		out[i] = roleProto(r)
	}
	return out
}

func ruleSetProto(info RuleSetInfo, withYAML bool) (*mappingv1.RuleSet, error) {
	out := &mappingv1.RuleSet{
		TenantId: info.Tenant, GuildId: info.Guild, Version: info.Version, Source: info.Source,
		RuleCount: uint32(len(info.Spec.Rules)),
	}
	if !info.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(info.UpdatedAt)
	}
	if rs, err := rules.Compile(info.Tenant, info.Version, &info.Spec); err == nil {
		out.ManagedRoles = rolesProto(rs.Managed())
	}
	if withYAML {
		spec := info.Spec
		spec.ID = ""
		b, err := rules.EncodeGuild(&spec)
		if err != nil {
			return nil, err
		}
		out.Yaml = string(b)
	}
	return out, nil
}

// ListRuleSets implements MappingService.
func (h *server) ListRuleSets(ctx context.Context, req *mappingv1.ListRuleSetsRequest) (*mappingv1.ListRuleSetsResponse, error) {
	infos, err := h.s.ListRuleSets(ctx, req.GetTenantId())
	if err != nil {
		return nil, grpcError(err)
	}
	out := &mappingv1.ListRuleSetsResponse{}
	for _, info := range infos {
		p, err := ruleSetProto(info, false)
		if err != nil {
			return nil, grpcError(err)
		}
		out.RuleSets = append(out.RuleSets, p)
	}
	return out, nil
}

// GetRuleSet implements MappingService.
func (h *server) GetRuleSet(ctx context.Context, req *mappingv1.GetRuleSetRequest) (*mappingv1.GetRuleSetResponse, error) {
	info, err := h.s.GetRuleSet(ctx, req.GetTenantId(), req.GetGuildId())
	if err != nil {
		return nil, grpcError(err)
	}
	p, err := ruleSetProto(info, true)
	if err != nil {
		return nil, grpcError(err)
	}
	return &mappingv1.GetRuleSetResponse{RuleSet: p}, nil
}

// PutRuleSet implements MappingService.
func (h *server) PutRuleSet(ctx context.Context, req *mappingv1.PutRuleSetRequest) (*mappingv1.PutRuleSetResponse, error) {
	info, err := h.s.PutRuleSet(ctx, req.GetTenantId(), req.GetGuildId(), []byte(req.GetYaml()), req.GetExpectedVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	p, err := ruleSetProto(info, true)
	if err != nil {
		return nil, grpcError(err)
	}
	return &mappingv1.PutRuleSetResponse{RuleSet: p}, nil
}

// DeleteRuleSet implements MappingService.
func (h *server) DeleteRuleSet(ctx context.Context, req *mappingv1.DeleteRuleSetRequest) (*mappingv1.DeleteRuleSetResponse, error) {
	v, err := h.s.DeleteRuleSet(ctx, req.GetTenantId(), req.GetGuildId(), req.GetExpectedVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	return &mappingv1.DeleteRuleSetResponse{Version: v}, nil
}

// Preview implements MappingService.
func (h *server) Preview(ctx context.Context, req *mappingv1.PreviewRequest) (*mappingv1.PreviewResponse, error) {
	h.s.metrics.previews.Add(1)
	rep, err := h.s.Preview(ctx, req.GetTenantId(), req.GetGuildId(), []byte(req.GetYaml()), req.GetDelete())
	if err != nil {
		return nil, grpcError(err)
	}
	return previewProto(rep), nil
}

func previewProto(rep *PreviewReport) *mappingv1.PreviewResponse {
	out := &mappingv1.PreviewResponse{
		CurrentVersion: rep.CurrentVersion,
		MembersScanned: uint32(rep.MembersScanned),
		Unmanaged:      rolesProto(rep.Unmanaged),
		NewlyManaged:   rolesProto(rep.NewlyManaged),
	}
	for _, c := range rep.Changes {
		out.Changes = append(out.Changes, &mappingv1.MemberChange{
			UserId: c.UserID, UserName: c.UserName, DiscordUserId: c.DiscordUserID,
			Gained: rolesProto(c.Gained), Lost: rolesProto(c.Lost),
		})
	}
	for _, r := range rep.Roles {
		out.Roles = append(out.Roles, &mappingv1.RoleChange{Role: roleProto(r.Role), Gained: uint32(r.Gained), Lost: uint32(r.Lost)})
	}
	return out
}

// grpcError maps the service's errors to gRPC codes (the edge). Validation
// errors carry one BadRequest field violation per problem.
func grpcError(err error) error {
	var ve *rules.ValidationError
	switch {
	case errors.As(err, &ve):
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, fe := range ve.Errors {
			desc := fe.Problem
			if fe.Rule != "" {
				desc = "rule " + fe.Rule + ": " + desc
			}
			if fe.Line > 0 {
				desc = fmt.Sprintf("line %d: %s", fe.Line, desc)
			}
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: fe.Path, Description: desc})
		}
		if d, derr := st.WithDetails(br); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, errBadRequest), errors.Is(err, rules.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, ErrReadOnly):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
