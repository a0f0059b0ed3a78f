// Package applier is the scimcord service that makes Discord match the SCIM
// state: a durable JetStream consumer on the resource stream that, for every
// affected member, asks the mapping service for the desired managed roles,
// reads the member from Discord and issues the fewest calls that close the gap,
// within Discord's rate limits, recording a sync status per member.
package applier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// Config configures the applier. Start from DefaultConfig.
type Config struct {
	// HTTPAddr serves /healthz and /readyz; "" runs no listener (all-in-one).
	HTTPAddr string
	// GlobalRPS is the bot's global request budget per second
	// (SCIMCORD_DISCORD_GLOBAL_RPS, Discord's is 50).
	GlobalRPS float64
	// GlobalWindow is the window GlobalRPS is measured over (1s; a
	// time-scaled emulator scales it, and GlobalRPS with it).
	GlobalWindow time.Duration
	// Durable is the JetStream durable consumer name; replicas share it.
	Durable string
	// Workers is the number of messages handled at once.
	Workers int
	// ShutdownTimeout bounds the graceful stop: messages in flight when Run's
	// context ends may finish within it; then their calls are cancelled and
	// the messages are redelivered (to another replica, or after a restart).
	ShutdownTimeout time.Duration
	// MaxRateWait is the longest a handler waits for the rate limiter; a
	// longer wait delays the message (NakWithDelay) instead.
	MaxRateWait time.Duration
	// RetryBase and RetryMax bound the backoff (with jitter) of transient errors.
	RetryBase, RetryMax time.Duration
	// FreshRoles is the oldest a GET of a member may be when a PATCH with
	// the whole role list computed from it is sent; an older read is done
	// again (roles are never reused across a rate-limit wait). It bounds the
	// window in which an unmanaged role a human adds could be lost: Discord
	// has no compare-and-set on member roles.
	FreshRoles time.Duration
	// RequestTimeout bounds one Discord HTTP call.
	RequestTimeout time.Duration
	// AckWait is the JetStream ack wait of the consumer. A running handler
	// keeps its message with a heartbeat (InProgress) every AckWait/3, so this
	// is how fast another replica takes over the messages of a dead one.
	AckWait time.Duration
	// ReplicaTTL is how long a replica counts as alive after its last
	// heartbeat. Live replicas share the bot's limits: each uses 1/N of the
	// global limit and of every bucket.
	ReplicaTTL time.Duration
	// ReplicaBucket is the KV bucket of replica heartbeats.
	ReplicaBucket string
	// LeaseBucket holds one lease per member being reconciled, so replicas
	// never reconcile one member at once (per-member order across
	// replicas); a lease expires LeaseTTL after its last renewal (a dead
	// holder's members are free again after it).
	LeaseBucket string
	LeaseTTL    time.Duration
	// AuditReason prefixes the X-Audit-Log-Reason of every change.
	AuditReason string
	// DeadLetterBucket is the KV bucket of dead letters (permanent failures).
	DeadLetterBucket string
	// GracePeriod delays a kick or ban after deactivation or deletion; the
	// managed roles are removed at once, and a re-activation within the
	// period restores them. 0 = act at once. A guild's grace_period (tenant
	// file) overrides it.
	GracePeriod time.Duration
	// BrakeMaxCount and BrakeMaxShare engage the mass-removal brake when one
	// burst (BrakeWindow) would remove roles from, kick or ban more than
	// max(BrakeMaxCount, BrakeMaxShare × guild members) members; the rest are
	// held until AllowRemovals. BrakeMaxCount 0 disables the brake. A
	// guild's brake_max_count / brake_max_share (tenant file) override them.
	BrakeMaxCount int
	BrakeMaxShare float64
	BrakeWindow   time.Duration
	// BrakeRecheck is how often a held removal is looked at again.
	BrakeRecheck time.Duration
	// ScheduleBucket holds the kicks and bans waiting for GracePeriod.
	ScheduleBucket string
	// BrakeBucket holds the brake state of each guild (shared by replicas).
	BrakeBucket string
	// DriftInterval is the period of the full reconcile of every guild
	// (drift repair); 0 disables it. DriftDryRun only reports the changes.
	DriftInterval time.Duration
	DriftDryRun   bool
	// PendingJoinInterval is how often members found not in their guild
	// (pending_join) are checked again, at low priority, so a member who
	// joins gets their roles without waiting for drift repair; 0 disables.
	// PendingJoinBatch bounds the members checked per round (oldest check
	// first), which bounds the GETs it spends.
	PendingJoinInterval time.Duration
	PendingJoinBatch    int
	// GuildRefresh is how often each guild's roles, the bot's position and
	// the owner are read again (low priority), so a role created or moved
	// above the bot protects its members without a failing call; 0 = only
	// when needed (a member holding a role not seen yet, a 50013/10011, and
	// drift repair).
	GuildRefresh time.Duration
	// AutoCreateRoles gives every SCIM group a role of its name in each guild
	// of the tenant (created below the bot, renamed and deleted with the
	// group; only roles scimcord created, recorded in RolesBucket).
	AutoCreateRoles bool
	RolesBucket     string
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:            ":8081",
		GlobalRPS:           50,
		GlobalWindow:        time.Second,
		Durable:             "applier",
		Workers:             32,
		ShutdownTimeout:     10 * time.Second,
		MaxRateWait:         2 * time.Second,
		RetryBase:           500 * time.Millisecond,
		RetryMax:            time.Minute,
		FreshRoles:          250 * time.Millisecond,
		RequestTimeout:      15 * time.Second,
		AckWait:             3 * time.Second,
		ReplicaTTL:          3 * time.Second,
		ReplicaBucket:       "applier_replicas",
		LeaseBucket:         "applier_leases",
		LeaseTTL:            3 * time.Second,
		AuditReason:         "scimcord",
		DeadLetterBucket:    "applier_deadletter",
		BrakeMaxCount:       25,
		BrakeMaxShare:       0.1,
		BrakeWindow:         10 * time.Minute,
		BrakeRecheck:        30 * time.Second,
		DriftInterval:       6 * time.Hour,
		PendingJoinInterval: time.Minute,
		PendingJoinBatch:    100,
		GuildRefresh:        time.Minute,
		RolesBucket:         "applier_roles",
		ScheduleBucket:      "applier_scheduled",
		BrakeBucket:         "applier_brake",
	}
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.GlobalRPS <= 0 {
		errs = append(errs, fmt.Errorf("applier: GlobalRPS %v must be > 0", c.GlobalRPS))
	}
	if c.GlobalWindow <= 0 {
		errs = append(errs, fmt.Errorf("applier: GlobalWindow %v must be > 0", c.GlobalWindow))
	}
	if !eventbus.ValidToken(c.Durable) {
		errs = append(errs, fmt.Errorf("applier: Durable %q must match [A-Za-z0-9_=-]+", c.Durable))
	}
	if c.Workers <= 0 {
		errs = append(errs, fmt.Errorf("applier: Workers %d must be > 0", c.Workers))
	}
	if c.ShutdownTimeout <= 0 || c.MaxRateWait <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase ||
		c.RequestTimeout <= 0 || c.AckWait <= 0 || c.FreshRoles <= 0 {
		errs = append(errs, errors.New("applier: ShutdownTimeout, MaxRateWait, RetryBase, RequestTimeout, AckWait and FreshRoles must be > 0 and RetryMax >= RetryBase"))
	}
	if c.ReplicaTTL < time.Second || !eventbus.ValidToken(c.ReplicaBucket) {
		errs = append(errs, fmt.Errorf("applier: ReplicaTTL %s must be >= 1s and ReplicaBucket %q a valid bucket name", c.ReplicaTTL, c.ReplicaBucket))
	}
	if c.GracePeriod < 0 || c.BrakeMaxCount < 0 || c.BrakeMaxShare < 0 || c.BrakeMaxShare > 1 {
		errs = append(errs, errors.New("applier: GracePeriod and BrakeMaxCount must be >= 0 and BrakeMaxShare within 0..1"))
	}
	if c.BrakeMaxCount > 0 && (c.BrakeWindow <= 0 || c.BrakeRecheck <= 0) {
		errs = append(errs, errors.New("applier: BrakeWindow and BrakeRecheck must be > 0 when the brake is on"))
	}
	if c.LeaseTTL < 300*time.Millisecond || !eventbus.ValidToken(c.LeaseBucket) {
		errs = append(errs, fmt.Errorf("applier: LeaseTTL %s must be >= 300ms and LeaseBucket %q a valid bucket name", c.LeaseTTL, c.LeaseBucket))
	}
	if !eventbus.ValidToken(c.BrakeBucket) {
		errs = append(errs, fmt.Errorf("applier: BrakeBucket %q is not a valid bucket name", c.BrakeBucket))
	}
	if !eventbus.ValidToken(c.ScheduleBucket) {
		errs = append(errs, fmt.Errorf("applier: ScheduleBucket %q is not a valid bucket name", c.ScheduleBucket))
	}
	if c.AutoCreateRoles && !eventbus.ValidToken(c.RolesBucket) {
		errs = append(errs, fmt.Errorf("applier: RolesBucket %q is not a valid bucket name", c.RolesBucket))
	}
	if c.DriftInterval < 0 || c.GuildRefresh < 0 {
		errs = append(errs, errors.New("applier: DriftInterval and GuildRefresh must be >= 0"))
	}
	if c.PendingJoinInterval < 0 || (c.PendingJoinInterval > 0 && c.PendingJoinBatch <= 0) {
		errs = append(errs, fmt.Errorf("applier: PendingJoinInterval %s must be >= 0 and PendingJoinBatch %d > 0 when it is on", c.PendingJoinInterval, c.PendingJoinBatch))
	}
	if !eventbus.ValidToken(c.DeadLetterBucket) {
		errs = append(errs, fmt.Errorf("applier: DeadLetterBucket %q is not a valid bucket name", c.DeadLetterBucket))
	}
	return errors.Join(errs...)
}

// Deps are the applier's collaborators, created by the caller.
type Deps struct {
	// JS is the JetStream context; the buckets exist (eventbus.EnsureBuckets).
	JS jetstream.JetStream
	// Tenants says which guilds each tenant drives, and the policies.
	Tenants *tenants.Set
	// Mapping is a client of the mapping service.
	Mapping mappingv1.MappingServiceClient
	// BotToken authenticates to Discord. Never logged.
	BotToken string
	// HTTPClient is discordgo's client (emu.HTTPClient() in tests); nil → a
	// default client with Config.RequestTimeout.
	HTTPClient *http.Client
	// Logger receives the applier's logs; the caller names the service on
	// it (log.With("service", "applier")): the applier adds no service attribute.
	Logger *slog.Logger
	// TracerProvider traces the applier (nil → no-op).
	TracerProvider trace.TracerProvider
}

// Service is a configured applier.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	tracer  trace.Tracer
	limiter *Limiter
	dc      *discord
	coal    *coalescer
	metrics *metrics
	brake   *brake

	store  *eventbus.Store
	status *statusStore
	dead   *deadLetters
	// replicas holds one heartbeat key per live replica.
	replicas jetstream.KeyValue
	id       string
	// leases holds the per-member leases (lease.go).
	leases jetstream.KeyValue
	// ownedRoles records the roles scimcord created (AutoCreateRoles).
	ownedRoles jetstream.KeyValue
	autoRoles  *autoRoleCache
	// scheduled holds the kicks and bans waiting for the grace period.
	scheduled jetstream.KeyValue

	pageSize  int                   // members per page in drift repair
	rulesSeen map[string]uint64     // guild → last mapping rules version (guarded by mu)
	guildInfo map[string]*guildInfo // guarded by mu
	infoTried map[string]time.Time  // guarded by mu: last lazy preflight per guild
	// refreshing serialises the refresh of each guild's roles (guarded by mu);
	// botID is the bot's user id once known (guarded by mu).
	refreshing map[string]*sync.Mutex
	botID      string

	ready atomic.Bool
	mu    sync.Mutex
	// admin is the state of the operator API (admin.go).
	admin *adminState
}

// New checks the configuration and dependencies and builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.JS == nil:
		return nil, errors.New("applier: Deps.JS is required")
	case deps.Tenants == nil:
		return nil, errors.New("applier: Deps.Tenants is required")
	case deps.Mapping == nil:
		return nil, errors.New("applier: Deps.Mapping is required")
	case deps.BotToken == "":
		return nil, errors.New("applier: Deps.BotToken is required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := deps.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	deps.TracerProvider = tp
	m := newMetrics()
	lim := NewLimiter(cfg.GlobalRPS, cfg.GlobalWindow, cfg.MaxRateWait)
	dc, err := newDiscord(deps.BotToken, deps.HTTPClient, lim, m, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	inv, ds := newInvalidWindow(), newDiscordStats()
	if lt, ok := dc.s.Client.Transport.(*limitTransport); ok {
		// Inside the limiter: the span sees the raw rate-limit headers.
		lt.base = &spanTransport{base: lt.base, tracer: tp.Tracer("github.com/scimcord/scimcord/services/applier/discord"), invalid: inv, stats: ds}
	}
	return &Service{
		cfg: cfg, deps: deps, log: log, // callers name the service (service=applier)
		tracer:  tp.Tracer("github.com/scimcord/scimcord/services/applier"),
		limiter: lim, dc: dc, coal: newCoalescer(), metrics: m,
		pageSize: membersPage, id: replicaID(),
		autoRoles: &autoRoleCache{at: map[string]time.Time{}, roles: map[string]map[string]string{}},
		brake:     newBrake(cfg.BrakeMaxCount, cfg.BrakeMaxShare, cfg.BrakeWindow, deps.Tenants),
		admin:     &adminState{invalid: inv, discord: ds},
	}, nil
}

// open binds the buckets (idempotent).
func (s *Service) open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return nil
	}
	st, err := eventbus.OpenStore(ctx, s.deps.JS)
	if err != nil {
		return err
	}
	kv, err := s.deps.JS.KeyValue(ctx, eventbus.StatusBucket)
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", eventbus.StatusBucket, err)
	}
	dl, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.DeadLetterBucket, History: 1})
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", s.cfg.DeadLetterBucket, err)
	}
	rp, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.ReplicaBucket, History: 1, TTL: s.cfg.ReplicaTTL})
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", s.cfg.ReplicaBucket, err)
	}
	ls, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.LeaseBucket, History: 1, TTL: s.cfg.LeaseTTL})
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", s.cfg.LeaseBucket, err)
	}
	s.leases = ls
	sc, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.ScheduleBucket, History: 1})
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", s.cfg.ScheduleBucket, err)
	}
	s.scheduled = sc
	bk, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.BrakeBucket, History: 1})
	if err != nil {
		return fmt.Errorf("applier: open bucket %s: %w", s.cfg.BrakeBucket, err)
	}
	s.brake.mu.Lock()
	s.brake.kv = bk
	s.brake.mu.Unlock()
	if s.cfg.AutoCreateRoles {
		or, err := s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.cfg.RolesBucket, History: 1})
		if err != nil {
			return fmt.Errorf("applier: open bucket %s: %w", s.cfg.RolesBucket, err)
		}
		s.ownedRoles = or
	}
	s.store, s.status, s.dead, s.replicas = st, &statusStore{kv: kv}, &deadLetters{kv: dl}, rp
	return nil
}

// shutdownBackstop is how long Run waits, after ShutdownTimeout, for the
// cancelled handlers to return.
const shutdownBackstop = 5 * time.Second

// Run consumes the resource stream until ctx ends, then stops gracefully
// within ShutdownTimeout (plus shutdownBackstop if handlers do not return).
func (s *Service) Run(ctx context.Context) error {
	for {
		err := s.open(ctx)
		if err == nil {
			break
		}
		s.log.WarnContext(ctx, "jetstream not ready, retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	var wg sync.WaitGroup
	var srv *http.Server
	if s.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("applier: listen %s: %w", s.cfg.HTTPAddr, err)
		}
		srv = &http.Server{Handler: s.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.ErrorContext(ctx, "health listener failed", "error", err)
			}
		}()
		s.log.InfoContext(ctx, "health listener started", "addr", ln.Addr().String())
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := s.Preflight(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "preflight failed", "error", err)
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); s.heartbeatLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.scheduleLoop(ctx) }()
	if s.cfg.DriftInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.driftLoop(ctx) }()
	}
	if s.cfg.GuildRefresh > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.guildRefreshLoop(ctx, s.cfg.GuildRefresh) }()
	}
	if s.cfg.PendingJoinInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.pendingJoinLoop(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.serveAdmin(ctx) }()
	s.ready.Store(true)
	s.log.InfoContext(ctx, "applier started", "durable", s.cfg.Durable, "workers", s.cfg.Workers, "global_rps", s.cfg.GlobalRPS)
	done := make(chan error, 1)
	go func() {
		done <- eventbus.Consume(ctx, s.deps.JS, eventbus.ConsumeConfig{
			Stream:   eventbus.ResourceStream,
			Durable:  s.cfg.Durable,
			Workers:  s.cfg.Workers,
			AckWait:  s.cfg.AckWait,
			Backoff:  s.backoff,
			SpanName: "applier.process",
			// In-flight messages finish within ShutdownTimeout, then are cancelled.
			DrainTimeout: s.cfg.ShutdownTimeout,
			Logger:       s.log,
			// The processing span is a child of the publish span (W3C
			// context in the message headers), made by our own provider.
			TracerProvider: s.deps.TracerProvider,
		}, s.handle)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Consume finishes the messages in flight within ShutdownTimeout
		// and then cancels them; a cancelled handler returns at once (its
		// lease release and status write are bounded by their own 2 s
		// timeouts), so this backstop only trips on a stuck NATS client.
		t := time.NewTimer(s.cfg.ShutdownTimeout + shutdownBackstop)
		select {
		case err = <-done:
		case <-t.C:
			err = fmt.Errorf("applier: shutdown timed out after %s", s.cfg.ShutdownTimeout+shutdownBackstop)
		}
		t.Stop()
	}
	s.ready.Store(false)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	s.log.InfoContext(context.WithoutCancel(ctx), "applier stopped")
	return err
}

func (s *Service) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Status returns the sync status of one member (ErrNoStatus if none yet).
func (s *Service) Status(ctx context.Context, tenant, guild, scimUserID string) (Status, error) {
	if err := s.open(ctx); err != nil {
		return Status{}, err
	}
	return s.status.get(ctx, tenant, guild, scimUserID)
}

// Metrics returns a snapshot of the applier's counters.
func (s *Service) Metrics() Metrics {
	m := s.metrics.snapshot()
	m.Limiter = s.limiter.Stats()
	return m
}
