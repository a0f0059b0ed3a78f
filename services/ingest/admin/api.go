package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// httpError is an error with the HTTP status of its answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(f string, a ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(f, a...)}
}
func notFound(f string, a ...any) error { return &httpError{http.StatusNotFound, fmt.Sprintf(f, a...)} }
func unavailable(f string, a ...any) error {
	return &httpError{http.StatusServiceUnavailable, fmt.Sprintf(f, a...)}
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// api adapts a JSON endpoint: its error decides the status.
func (s *Server) api(f func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		v, err := f(r.WithContext(ctx))
		if err != nil {
			st := http.StatusInternalServerError
			var he *httpError
			switch {
			case errors.As(err, &he):
				st = he.status
			case errors.Is(err, context.DeadlineExceeded):
				st = http.StatusGatewayTimeout
			}
			if st >= 500 {
				s.log.WarnContext(ctx, "admin request failed", "path", r.URL.Path, "status", st, "error", err)
			}
			writeJSON(w, st, errorBody{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// decodeBody reads a small JSON request body.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return badRequest("read body: %v", err)
	}
	if len(data) > 1<<20 {
		return &httpError{http.StatusRequestEntityTooLarge, "body over 1 MiB"}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badRequest("body is not the expected JSON: %v", err)
	}
	return nil
}

// applierRequest is the request of the applier's operator API
// (services/applier AdminRequest).
type applierRequest struct {
	Tenant string `json:"tenant"`
	Guild  string `json:"guild,omitempty"`
	User   string `json:"user,omitempty"`
	ID     string `json:"id,omitempty"`
	All    bool   `json:"all,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// askApplier sends op over NATS request/reply (trace context in the
// headers) and returns the result as raw JSON.
func (s *Server) askApplier(ctx context.Context, op string, req applierRequest) (json.RawMessage, error) {
	nc := s.deps.JS.Conn()
	if nc == nil {
		return nil, unavailable("applier: no NATS connection")
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg("scimcord.applier.admin." + op)
	msg.Data = data
	eventbus.InjectTrace(ctx, msg.Header)
	resp, err := nc.RequestMsgWithContext(ctx, msg)
	// No responder yet (the applier starting, or a rollout): wait a little.
	for wait := time.Now().Add(3 * time.Second); errors.Is(err, nats.ErrNoResponders) && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		resp, err = nc.RequestMsgWithContext(ctx, msg)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, unavailable("applier: no replica answers (is it running?)")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &httpError{http.StatusGatewayTimeout, "applier: no answer to " + op + " in time"}
		}
		return nil, unavailable("applier %s: %v", op, err)
	}
	var rep struct {
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(resp.Data, &rep); err != nil {
		return nil, fmt.Errorf("applier %s: bad reply: %w", op, err)
	}
	if rep.Error != "" {
		if strings.Contains(rep.Error, "bad request") {
			return nil, badRequest("applier: %s", rep.Error)
		}
		if strings.HasPrefix(rep.Error, "applier busy") {
			return nil, unavailable("%s", rep.Error)
		}
		return nil, fmt.Errorf("applier %s: %s", op, rep.Error)
	}
	return rep.Result, nil
}

// protoJSON renders a proto message as JSON (snake_case field names).
func protoJSON(m proto.Message) json.RawMessage {
	data, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return data
}

// grpcError maps a mapping error to the answer.
func grpcError(what string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition:
		return badRequest("mapping %s: %s", what, st.Message())
	case codes.NotFound:
		return notFound("mapping %s: %s", what, st.Message())
	case codes.Aborted:
		return &httpError{http.StatusConflict, "mapping " + what + ": " + st.Message()}
	case codes.Unavailable:
		return unavailable("mapping %s: %s", what, st.Message())
	case codes.DeadlineExceeded:
		return &httpError{http.StatusGatewayTimeout, "mapping " + what + ": " + st.Message()}
	}
	return fmt.Errorf("mapping %s: %w", what, err)
}

// StatusResult is the answer of /admin/api/v1/status (and `scimcord status -o json`).
type StatusResult struct {
	Tenant string          `json:"tenant"`
	User   UserView        `json:"user"`
	Groups []GroupView     `json:"groups"`
	Guilds json.RawMessage `json:"guilds"` // applier AdminMemberStatus per guild
}

func (s *Server) apiStatus(r *http.Request) (any, error) {
	ctx := r.Context()
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	u, groups, err := s.lookup(ctx, t, r.URL.Query().Get("user"))
	if err != nil {
		return nil, err
	}
	guilds, err := s.askApplier(ctx, "status", applierRequest{Tenant: t.ID, User: u.ID})
	if err != nil {
		return nil, err
	}
	return StatusResult{Tenant: t.ID, User: u.view(), Groups: groups, Guilds: guilds}, nil
}

// ExplainResult is the answer of /admin/api/v1/explain.
type ExplainResult struct {
	Tenant string         `json:"tenant"`
	User   UserView       `json:"user"`
	Groups []GroupView    `json:"groups"`
	Guilds []GuildExplain `json:"guilds"`
}

// GuildExplain is mapping's explanation for one guild.
type GuildExplain struct {
	Guild   string          `json:"guild"`
	Explain json.RawMessage `json:"explain"` // mapping.v1.ExplainResponse
}

func (s *Server) apiExplain(r *http.Request) (any, error) {
	ctx := r.Context()
	if s.deps.Mapping == nil {
		return nil, unavailable("mapping is not configured (SCIMCORD_MAPPING_ADDR)")
	}
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	u, groups, err := s.lookup(ctx, t, r.URL.Query().Get("user"))
	if err != nil {
		return nil, err
	}
	refs := make([]*mappingv1.GroupRef, 0, len(groups))
	for _, g := range groups {
		refs = append(refs, &mappingv1.GroupRef{Id: g.ID, ExternalId: g.ExternalID, DisplayName: g.DisplayName})
	}
	out := ExplainResult{Tenant: t.ID, User: u.view(), Groups: groups}
	for _, g := range t.Guilds {
		res, err := s.deps.Mapping.Explain(ctx, &mappingv1.ExplainRequest{Member: &mappingv1.ResolveRolesRequest{
			TenantId: t.ID, GuildId: g.ID, Groups: refs, Active: u.Active && !u.Deleted, UserJson: u.Snapshot, UserId: u.ID,
		}})
		if err != nil {
			return nil, grpcError("explain", err)
		}
		out.Guilds = append(out.Guilds, GuildExplain{Guild: g.ID, Explain: protoJSON(res)})
	}
	return out, nil
}

func (s *Server) apiOverview(r *http.Request) (any, error) {
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	return s.askApplier(r.Context(), "overview", applierRequest{Tenant: t.ID})
}

func (s *Server) apiDLQList(r *http.Request) (any, error) {
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	return s.askApplier(r.Context(), "dlq.list", applierRequest{Tenant: t.ID})
}

// ReplayRequest is the body of /admin/api/v1/dlq/replay.
type ReplayRequest struct {
	// ID is "<guild>/<SCIM user id>" or the SCIM user id.
	ID  string `json:"id"`
	All bool   `json:"all"`
}

func (s *Server) apiDLQReplay(r *http.Request) (any, error) {
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	var req ReplayRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if (req.ID == "") == !req.All {
		return nil, badRequest("give either id or all=true")
	}
	return s.askApplier(r.Context(), "dlq.replay", applierRequest{Tenant: t.ID, ID: req.ID, All: req.All})
}

// ReconcileRequest is the body of /admin/api/v1/reconcile.
type ReconcileRequest struct {
	Guild  string `json:"guild"`
	DryRun bool   `json:"dry_run"`
}

func (s *Server) apiReconcile(r *http.Request) (any, error) {
	t, err := s.tenant(r)
	if err != nil {
		return nil, err
	}
	var req ReconcileRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if !guildOf(t, req.Guild) {
		return nil, badRequest("guild %q is not driven by tenant %q", req.Guild, t.ID)
	}
	return s.askApplier(r.Context(), "reconcile", applierRequest{Tenant: t.ID, Guild: req.Guild, DryRun: req.DryRun})
}

func guildOf(t *tenants.Tenant, id string) bool {
	for _, g := range t.Guilds {
		if g.ID == id {
			return true
		}
	}
	return false
}
