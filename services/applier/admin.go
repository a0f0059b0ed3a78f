package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scimcord/scimcord/pkg/eventbus"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// The operator API of the applier is NATS request/reply: a request on
// AdminSubjectPrefix+op (JSON AdminRequest) gets a JSON reply. Replicas share
// the queue group AdminQueue, so one of them answers. Ingest's admin API
// (services/ingest/admin) is the client; the operations are those only the
// applier can do (it holds the Discord session and the limiter).
const (
	AdminSubjectPrefix = "scimcord.applier.admin."
	AdminQueue         = "scimcord-applier-admin"
	// adminTimeout bounds one operation (a dry-run repair lists a whole guild).
	adminTimeout = 2 * time.Minute
	// adminMaxList caps the lists of one reply (a NATS message is ≤ 1 MiB).
	adminMaxList = 500
	// adminReportsBucket keeps the last drift report of every guild, so that
	// any replica shows the one another replica made.
	adminReportsBucket = "applier_reports"
)

// The operations.
const (
	AdminOpStatus    = "status"     // {tenant, user} → AdminMemberStatus per guild
	AdminOpOverview  = "overview"   // {tenant} → counts, failures, pending links, brakes, last repairs
	AdminOpDLQList   = "dlq.list"   // {tenant} → dead letters
	AdminOpDLQReplay = "dlq.replay" // {tenant, id | all} → replayed count and errors
	AdminOpReconcile = "reconcile"  // {tenant, guild, dry_run} → RepairReport
)

// AdminRequest is the body of an operator request.
type AdminRequest struct {
	Tenant string `json:"tenant"`
	Guild  string `json:"guild,omitempty"`
	// User is a SCIM user id (status).
	User string `json:"user,omitempty"`
	// ID names one dead letter: "<guild>/<user>" or the SCIM user id.
	ID     string `json:"id,omitempty"`
	All    bool   `json:"all,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// AdminMemberStatus is one member's state in one guild: the recorded sync
// status and, read now, the desired and the actual managed roles.
type AdminMemberStatus struct {
	Guild         string   `json:"guild"`
	Status        *Status  `json:"status,omitempty"`
	DiscordUserID string   `json:"discord_user_id,omitempty"`
	InGuild       bool     `json:"in_guild"`
	Desired       []string `json:"desired_roles"`
	Actual        []string `json:"actual_roles"`
	Managed       []string `json:"managed_roles"`
	ToAdd         []string `json:"to_add,omitempty"`
	ToRemove      []string `json:"to_remove,omitempty"`
	PlanError     string   `json:"plan_error,omitempty"`
}

// AdminGuildOverview is one guild of the status page.
type AdminGuildOverview struct {
	Guild  string         `json:"guild"`
	Counts map[State]int  `json:"counts"`
	Brake  *BrakeState    `json:"brake,omitempty"`
	Repair *RepairSummary `json:"last_repair,omitempty"`
}

// RepairSummary is the last drift report of a guild.
type RepairSummary struct {
	RepairReport
	Error string `json:"error,omitempty"`
}

// AdminOverview is the applier's part of the status page of a tenant.
type AdminOverview struct {
	Tenant       string               `json:"tenant"`
	Guilds       []AdminGuildOverview `json:"guilds"`
	Failures     []Status             `json:"failures"`      // failed and retrying
	PendingLinks []Status             `json:"pending_links"` // pending_link and pending_join
	DeadLetters  []DeadLetter         `json:"dead_letters"`
	// InvalidRequests10m counts Discord 401/403/429 answers in the last 10 minutes.
	InvalidRequests10m int `json:"invalid_requests_10m"`
}

// AdminReplayResult is the outcome of a replay.
type AdminReplayResult struct {
	Replayed int      `json:"replayed"`
	Errors   []string `json:"errors"` // always present ([] when none)
}

// adminReply is the envelope of every reply.
type adminReply struct {
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

// adminState is what the operator API keeps: the sync-status index, the last
// drift reports and the invalid-request window.
type adminState struct {
	invalid *invalidWindow
	discord *discordStats
	mu      sync.Mutex
	repairs map[string]RepairSummary // tenant|guild → last report
	index   map[string]Status        // sync_status key → status (kept by watchStatus)
	synced  bool
	reports jetstream.KeyValue // adminReportsBucket (nil until serveAdmin opened it)
	outcome map[State]int64    // applies by resulting sync state (this replica)
	slots   chan struct{}      // operator workers in use (workerSlots)
}

// applied counts one apply by the sync state it ended in.
func (a *adminState) applied(st State) {
	if a == nil {
		return
	}
	a.mu.Lock()
	if a.outcome == nil {
		a.outcome = map[State]int64{}
	}
	a.outcome[st]++
	a.mu.Unlock()
}

func (a *adminState) noteRepair(rep RepairReport, err error) {
	if a == nil {
		return
	}
	sum := RepairSummary{RepairReport: rep}
	if err != nil {
		sum.Error = err.Error()
	}
	if len(sum.Changes) > adminMaxList {
		sum.Changes = sum.Changes[:adminMaxList]
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.repairs == nil {
		a.repairs = map[string]RepairSummary{}
	}
	a.repairs[rep.Tenant+"|"+rep.Guild] = sum
	if kv := a.reports; kv != nil {
		if data, err := json.Marshal(sum); err == nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _ = kv.Put(ctx, rep.Tenant+"."+rep.Guild, data) // best effort: the report is also logged
			}()
		}
	}
}

// lastRepair returns the newest drift report of a guild, made by any replica.
func (a *adminState) lastRepair(ctx context.Context, tenant, guild string) *RepairSummary {
	a.mu.Lock()
	mine, ok := a.repairs[tenant+"|"+guild]
	kv := a.reports
	a.mu.Unlock()
	var best *RepairSummary
	if ok {
		best = &mine
	}
	if kv != nil && eventbus.ValidToken(tenant) && eventbus.ValidToken(guild) {
		if e, err := kv.Get(ctx, tenant+"."+guild); err == nil {
			var r RepairSummary
			if json.Unmarshal(e.Value(), &r) == nil && (best == nil || r.Started.After(best.Started)) {
				best = &r
			}
		}
	}
	return best
}

// MemberCounts returns the number of members per tenant, guild and sync state
// (the scimcord_applier_members gauge).
func (s *Service) MemberCounts() map[[3]string]int {
	out := map[[3]string]int{}
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	for _, st := range s.admin.index {
		out[[3]string{st.Tenant, st.Guild, string(st.State)}]++
	}
	return out
}

// InvalidRequests10m counts Discord's 401, 403 and 429 answers of the last
// ten minutes (Discord bans a bot at 10,000).
func (s *Service) InvalidRequests10m() int { return s.admin.invalid.count(time.Now()) }

// serveAdmin answers operator requests and keeps the status index until ctx
// ends. NATS trouble is logged and retried.
func (s *Service) serveAdmin(ctx context.Context) {
	nc := s.deps.JS.Conn()
	if nc == nil {
		return
	}
	go s.watchStatus(ctx)
	if kv, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: adminReportsBucket, History: 1}); err == nil {
		s.admin.mu.Lock()
		s.admin.reports = kv
		s.admin.mu.Unlock()
	} else {
		s.log.WarnContext(ctx, "drift reports are kept per replica only", "bucket", adminReportsBucket, "error", err)
	}
	slots := s.admin.workerSlots()
	sub, err := nc.QueueSubscribe(AdminSubjectPrefix+">", AdminQueue, func(m *nats.Msg) {
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				s.answerAdmin(ctx, m)
			}()
		default:
			// Every worker busy (a burst of requests, slow Discord reads):
			// refuse at once instead of piling up goroutines.
			data, _ := json.Marshal(adminReply{Error: ErrAdminBusy.Error()})
			_ = m.Respond(data)
		}
	})
	if err != nil {
		s.log.WarnContext(ctx, "operator API not available", "error", err)
		return
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
}

// watchStatus keeps admin.index current from the sync_status bucket.
func (s *Service) watchStatus(ctx context.Context) {
	for ctx.Err() == nil {
		kv, err := s.deps.JS.KeyValue(ctx, eventbus.StatusBucket)
		var w jetstream.KeyWatcher
		if err == nil {
			w, err = kv.WatchAll(ctx)
		}
		if err != nil {
			s.log.WarnContext(ctx, "sync status watch failed, retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.admin.mu.Lock()
		s.admin.index = map[string]Status{}
		s.admin.mu.Unlock()
		for e := range w.Updates() {
			if e == nil {
				s.admin.mu.Lock()
				s.admin.synced = true
				s.admin.mu.Unlock()
				continue
			}
			s.admin.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(s.admin.index, e.Key())
			} else {
				var st Status
				if json.Unmarshal(e.Value(), &st) == nil {
					if st.State == StateInSync {
						// Counted only: keep little per member (big guilds).
						st.Detail, st.Action, st.Roles = "", "", nil
					}
					s.admin.index[e.Key()] = st
				}
			}
			s.admin.mu.Unlock()
		}
		_ = w.Stop()
	}
}

func (s *Service) answerAdmin(ctx context.Context, m *nats.Msg) {
	op := strings.TrimPrefix(m.Subject, AdminSubjectPrefix)
	ctx, cancel := context.WithTimeout(eventbus.ExtractTrace(ctx, m.Header), adminTimeout)
	defer cancel()
	ctx, span := s.tracer.Start(ctx, "applier.admin "+op, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("rpc.system", "nats"), attribute.String("rpc.method", op)))
	defer span.End()
	var req AdminRequest
	var res any
	err := json.Unmarshal(m.Data, &req)
	if err != nil {
		err = fmt.Errorf("applier admin: decode %s request: %w", op, err)
	} else {
		span.SetAttributes(attribute.String("scimcord.tenant", req.Tenant))
		res, err = s.adminOp(ctx, op, req)
	}
	rep := adminReply{Result: res}
	if err != nil {
		rep.Error = err.Error()
		span.SetStatus(codes.Error, "operator request failed")
		s.log.WarnContext(ctx, "operator request failed", "op", op, "tenant", req.Tenant, "error", err)
	}
	data, merr := json.Marshal(rep)
	if merr != nil {
		data, _ = json.Marshal(adminReply{Error: "applier admin: encode reply: " + merr.Error()})
	}
	_ = m.Respond(data)
}

// adminWorkers bounds the operator requests one replica answers at once.
const adminWorkers = 16

// ErrAdminBusy is the reply when every operator worker of the replica is busy.
var ErrAdminBusy = errors.New("applier busy: too many operator requests at once, retry shortly")

// workerSlots returns the semaphore of the operator workers.
func (a *adminState) workerSlots() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.slots == nil {
		a.slots = make(chan struct{}, adminWorkers)
	}
	return a.slots
}

// ErrAdminBadRequest marks an operator request the applier refuses.
var ErrAdminBadRequest = errors.New("bad request")

func (s *Service) adminOp(ctx context.Context, op string, req AdminRequest) (any, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	t, ok := s.deps.Tenants.Get(req.Tenant)
	if !ok {
		return nil, fmt.Errorf("%w: unknown tenant %q", ErrAdminBadRequest, req.Tenant)
	}
	switch op {
	case AdminOpStatus:
		if req.User == "" {
			return nil, fmt.Errorf("%w: user is required", ErrAdminBadRequest)
		}
		if !eventbus.ValidToken(req.User) {
			// It becomes a key and a subject: never send what NATS refuses.
			return nil, fmt.Errorf("%w: user must be a SCIM id (1-%d of A-Z a-z 0-9 _ = -)", ErrAdminBadRequest, eventbus.MaxTokenLen)
		}
		return s.adminStatus(ctx, t, req.User), nil
	case AdminOpOverview:
		return s.adminOverview(ctx, t)
	case AdminOpDLQList:
		dls, err := s.tenantDeadLetters(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		out := make([]deadLetterJSON, 0, len(dls))
		for _, dl := range dls {
			out = append(out, deadLetterJSON{statusJSON: statusOut(dl.Status), Op: dl.Op, HTTPStatus: dl.HTTPStatus})
		}
		return out, nil
	case AdminOpDLQReplay:
		return s.adminReplay(ctx, t, req)
	case AdminOpReconcile:
		g, ok := guildOf(t, req.Guild)
		if !ok {
			return nil, fmt.Errorf("%w: guild %q is not driven by tenant %q", ErrAdminBadRequest, req.Guild, t.ID)
		}
		rep, err := s.Repair(ctx, t.ID, g.ID, req.DryRun)
		s.admin.noteRepair(rep, err)
		if err != nil {
			return nil, err
		}
		return rep, nil
	}
	return nil, fmt.Errorf("%w: unknown operation %q", ErrAdminBadRequest, op)
}

func guildOf(t *tenants.Tenant, id string) (tenants.Guild, bool) {
	for _, g := range t.Guilds {
		if g.ID == id {
			return g, true
		}
	}
	return tenants.Guild{}, false
}

func (s *Service) adminStatus(ctx context.Context, t *tenants.Tenant, user string) []AdminMemberStatus {
	var out []AdminMemberStatus
	for _, g := range t.Guilds {
		ms := AdminMemberStatus{Guild: g.ID, Desired: []string{}, Actual: []string{}, Managed: []string{}}
		if st, err := s.status.get(ctx, t.ID, g.ID, user); err == nil {
			ms.Status = &st
		}
		p, err := s.plan(ctx, t, g, user)
		if err != nil {
			ms.PlanError = err.Error()
		} else {
			ms.DiscordUserID, ms.InGuild = p.discordID, p.inGuild
			ms.Desired, ms.Actual, ms.Managed = nonNil(p.desired), nonNil(p.current), nonNil(p.managed)
			ms.ToAdd, ms.ToRemove = p.add, p.rm
			if p.discordID != "" && p.inGuild && p.policy != tenants.ActionNone && p.deferred == "" {
				ms.Status = pendingView(ms.Status, t.ID, g.ID, user, p.add, p.rm)
			}
		}
		out = append(out, ms)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func (s *Service) tenantDeadLetters(ctx context.Context, tenant string) ([]DeadLetter, error) {
	dls, err := s.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	out := []DeadLetter{}
	s.admin.mu.Lock()
	for i, dl := range dls {
		if st, ok := s.admin.index[eventbus.StatusKey(dl.Tenant, dl.Guild, dl.User)]; ok && dl.Time.IsZero() {
			dls[i].Time = st.Time // recorded with the status, just after the dead letter
		}
	}
	s.admin.mu.Unlock()
	for _, dl := range dls {
		if dl.Tenant == tenant {
			out = append(out, dl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	if len(out) > adminMaxList {
		out = out[:adminMaxList]
	}
	return out, nil
}

func (s *Service) adminReplay(ctx context.Context, t *tenants.Tenant, req AdminRequest) (AdminReplayResult, error) {
	res := AdminReplayResult{Errors: []string{}}
	if req.All {
		n, err := s.Replay(ctx, t.ID)
		res.Replayed = n
		if err != nil {
			for _, e := range strings.Split(err.Error(), "\n") {
				res.Errors = append(res.Errors, e)
			}
		}
		return res, nil
	}
	if req.ID == "" {
		return res, fmt.Errorf("%w: a dead letter id or all", ErrAdminBadRequest)
	}
	dls, err := s.DeadLetters(ctx)
	if err != nil {
		return res, err
	}
	found := false
	for _, dl := range dls {
		if dl.Tenant != t.ID || (req.ID != dl.Guild+"/"+dl.User && req.ID != dl.User) {
			continue
		}
		g, ok := guildOf(t, dl.Guild)
		if !ok {
			continue
		}
		found = true
		if err := s.reconcile(ctx, t, g, dl.User); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("replay %s/%s: %v", dl.Guild, dl.User, err))
			continue
		}
		if st, err := s.status.get(ctx, t.ID, g.ID, dl.User); err == nil && st.State == StateFailed {
			res.Errors = append(res.Errors, fmt.Sprintf("replay %s/%s: still failing: %s", dl.Guild, dl.User, st.Detail))
			continue
		}
		res.Replayed++
	}
	if !found {
		return res, fmt.Errorf("%w: no dead letter %q", ErrAdminBadRequest, req.ID)
	}
	return res, nil
}

func (s *Service) adminOverview(ctx context.Context, t *tenants.Tenant) (AdminOverview, error) {
	ov := AdminOverview{Tenant: t.ID, Failures: []Status{}, PendingLinks: []Status{}, InvalidRequests10m: s.InvalidRequests10m()}
	brakes := map[string]BrakeState{}
	for _, b := range s.Brakes() {
		brakes[b.Guild] = b
	}
	s.admin.mu.Lock()
	counts := map[string]map[State]int{}
	for _, st := range s.admin.index {
		if st.Tenant != t.ID {
			continue
		}
		if counts[st.Guild] == nil {
			counts[st.Guild] = map[State]int{}
		}
		counts[st.Guild][st.State]++
		switch st.State {
		case StateFailed, StateRetrying:
			ov.Failures = append(ov.Failures, st)
		case StatePendingLink, StatePendingJoin:
			ov.PendingLinks = append(ov.PendingLinks, st)
		}
	}
	for _, g := range t.Guilds {
		gov := AdminGuildOverview{Guild: g.ID, Counts: counts[g.ID]}
		if gov.Counts == nil {
			gov.Counts = map[State]int{}
		}
		if b, ok := brakes[g.ID]; ok {
			gov.Brake = &b
		}
		ov.Guilds = append(ov.Guilds, gov)
	}
	s.admin.mu.Unlock()
	for i := range ov.Guilds {
		ov.Guilds[i].Repair = s.admin.lastRepair(ctx, t.ID, ov.Guilds[i].Guild)
	}
	newest := func(l []Status) []Status {
		sort.Slice(l, func(i, j int) bool { return l[i].Time.After(l[j].Time) })
		if len(l) > adminMaxList {
			l = l[:adminMaxList]
		}
		return l
	}
	ov.Failures, ov.PendingLinks = newest(ov.Failures), newest(ov.PendingLinks)
	dls, err := s.tenantDeadLetters(ctx, t.ID)
	if err != nil {
		return ov, err
	}
	ov.DeadLetters = dls
	return ov, nil
}

// The operator replies carry every field the README documents for
// `-o json`, empty ones included ("" , 0, [] or null), so that scripts need
// not guess whether a field is missing or empty. The stored records keep
// their compact form.

// statusJSON is Status with every field present.
type statusJSON struct {
	Tenant        string    `json:"tenant"`
	Guild         string    `json:"guild"`
	User          string    `json:"user"`
	DiscordUserID string    `json:"discord_user_id"`
	State         State     `json:"state"`
	Code          int       `json:"code"`
	Detail        string    `json:"detail"`
	Action        string    `json:"action"`
	Roles         []string  `json:"roles"`
	TraceID       string    `json:"trace_id"`
	Time          time.Time `json:"time"`
}

func statusOut(st Status) statusJSON {
	return statusJSON{Tenant: st.Tenant, Guild: st.Guild, User: st.User, DiscordUserID: st.DiscordUserID, State: st.State,
		Code: st.Code, Detail: st.Detail, Action: st.Action, Roles: nonNil(st.Roles), TraceID: st.TraceID, Time: st.Time}
}

// deadLetterJSON is a DeadLetter of the dlq.list reply.
type deadLetterJSON struct {
	statusJSON
	Op         string `json:"op"`
	HTTPStatus int    `json:"http_status"`
}

// MarshalJSON writes every documented field (status null when none).
func (m AdminMemberStatus) MarshalJSON() ([]byte, error) {
	var st *statusJSON
	if m.Status != nil {
		v := statusOut(*m.Status)
		st = &v
	}
	return json.Marshal(struct {
		Guild         string      `json:"guild"`
		Status        *statusJSON `json:"status"`
		DiscordUserID string      `json:"discord_user_id"`
		InGuild       bool        `json:"in_guild"`
		Desired       []string    `json:"desired_roles"`
		Actual        []string    `json:"actual_roles"`
		Managed       []string    `json:"managed_roles"`
		ToAdd         []string    `json:"to_add"`
		ToRemove      []string    `json:"to_remove"`
		PlanError     string      `json:"plan_error"`
	}{m.Guild, st, m.DiscordUserID, m.InGuild, nonNil(m.Desired), nonNil(m.Actual), nonNil(m.Managed),
		nonNil(m.ToAdd), nonNil(m.ToRemove), m.PlanError})
}

// MarshalJSON writes every documented field of a change of a drift report.
func (c PlannedChange) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		User          string   `json:"user"`
		DiscordUserID string   `json:"discord_user_id"`
		Op            string   `json:"op"`
		Add           []string `json:"add"`
		Remove        []string `json:"remove"`
		Done          bool     `json:"done"`
		Error         string   `json:"error"`
	}{c.User, c.DiscordUserID, c.Op, nonNil(c.Add), nonNil(c.Remove), c.Done, c.Error})
}
