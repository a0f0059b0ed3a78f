package mapping

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// server implements mappingv1.MappingServiceServer on a Service.
type server struct {
	mappingv1.UnimplementedMappingServiceServer
	s *Service
}

// errBadRequest marks request problems (→ InvalidArgument).
var errBadRequest = errors.New("bad request")

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
		return nil, err
	}
	resp := &mappingv1.ResolveRolesResponse{}
	rs := s.rules.get(req.GetTenantId(), req.GetGuildId())
	if rs == nil {
		// No rule set: nothing is managed in this guild, so nothing changes.
		return resp, nil
	}
	resp.RulesVersion = rs.Version
	resp.RoleIds = roleIDs(rs.Resolve(ctx, memberOf(req)))
	resp.ManagedRoleIds = roleIDs(rs.Managed())
	return resp, nil
}

// roleIDs returns the sorted ids of the roles referenced by id.
func roleIDs(refs []rules.RoleRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r.ID != "" {
			out = append(out, r.ID)
		}
	}
	sort.Strings(out)
	return out
}

// ResolveRoles implements MappingService.
func (h *server) ResolveRoles(ctx context.Context, req *mappingv1.ResolveRolesRequest) (*mappingv1.ResolveRolesResponse, error) {
	resp, err := h.s.resolve(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

// grpcError maps the service's errors to gRPC codes (the edge).
func grpcError(err error) error {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, rules.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
