// Package ingest is the SCIM 2.0 service provider (RFC 7643 / RFC 7644): it
// authenticates the IdP, validates and normalises its requests (IdP dialects
// included), and stores every change as one JetStream message that is both
// the new state and the event the applier consumes. Reads are served from an
// in-memory view kept current by watching the bucket.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/scimcord/scimcord/pkg/eventbus"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// Config configures the ingest service.
type Config struct {
	// HTTPAddr is the listen address (default ":8080"; "127.0.0.1:0" in
	// tests). Empty: Run keeps the view current but does not listen — serve
	// Handler() yourself.
	HTTPAddr string
	// BasePath is where SCIM is served (default "/scim/v2").
	BasePath string
	// MaxBodyBytes bounds request bodies; larger ones get 413 (default 1 MiB).
	MaxBodyBytes int64
	// MaxResourceBytes bounds one stored resource (its SCIM JSON): a write
	// that would make a user, a group's attributes or a membership larger
	// gets 400 invalidValue (default 256 KiB). It keeps every record far
	// below NATS's max_payload and the applier's gRPC message limit (4 MiB).
	MaxResourceBytes int
	// ShutdownTimeout bounds the graceful shutdown (default 10s).
	ShutdownTimeout time.Duration
	// HTTPReadTimeout bounds reading one request, body included (default
	// 30s); HTTPWriteTimeout bounds a request from the end of its headers
	// to the end of its response (default 2m: a 100,000-member PUT takes
	// seconds); HTTPIdleTimeout closes idle keep-alive connections (2m).
	HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration
	// PatchResponse is "204" (default: 204 No Content) or "200" (the
	// resource). A PATCH with attributes/excludedAttributes always gets 200.
	PatchResponse string
	// PatchResponseByTenant overrides PatchResponse per tenant id (an IdP
	// that wants the resource back after a PATCH).
	PatchResponseByTenant map[string]string
	// MaxResults caps a page of a list or search (default 1000); it is
	// filter.maxResults in /ServiceProviderConfig.
	MaxResults int
	// BulkMaxOperations and BulkMaxPayload are the /Bulk limits (defaults
	// 1000 and MaxBodyBytes).
	BulkMaxOperations int
	BulkMaxPayload    int64
	// ConsistentReads makes every read wait until this replica's view has
	// caught up with the stream (one coalesced stream-info request), so that a
	// write acknowledged by another replica is visible at once. Default true.
	ConsistentReads bool
	// WriteTimeout bounds one write to JetStream (default 5s).
	WriteTimeout time.Duration
	// BucketReplicas is passed to eventbus.EnsureBuckets (default 1).
	BucketReplicas int
	// TrustForwardedHeaders takes the scheme and host of meta.location and
	// $ref from the first entry of the proxy headers (RFC 7239 Forwarded,
	// else X-Forwarded-Proto / X-Forwarded-Host). Default false: enable it
	// only behind a proxy that sets or strips them (cmd/ingest does).
	TrustForwardedHeaders bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          ":8080",
		BasePath:          "/scim/v2",
		MaxBodyBytes:      1 << 20,
		MaxResourceBytes:  256 << 10,
		ShutdownTimeout:   10 * time.Second,
		HTTPReadTimeout:   30 * time.Second,
		HTTPWriteTimeout:  2 * time.Minute,
		HTTPIdleTimeout:   2 * time.Minute,
		PatchResponse:     "204",
		MaxResults:        1000,
		BulkMaxOperations: 1000,
		ConsistentReads:   true,
		WriteTimeout:      5 * time.Second,
		BucketReplicas:    1,
	}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	var errs []error
	if c.BasePath == "" || !strings.HasPrefix(c.BasePath, "/") || strings.HasSuffix(c.BasePath, "/") {
		errs = append(errs, fmt.Errorf("ingest: BasePath %q must start with / and not end with /", c.BasePath))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("ingest: MaxBodyBytes %d must be positive", c.MaxBodyBytes))
	}
	if c.HTTPReadTimeout <= 0 || c.HTTPWriteTimeout <= 0 || c.HTTPIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest: HTTPReadTimeout %s, HTTPWriteTimeout %s and HTTPIdleTimeout %s must be positive", c.HTTPReadTimeout, c.HTTPWriteTimeout, c.HTTPIdleTimeout))
	}
	if c.MaxResourceBytes <= 0 || c.MaxResourceBytes > 4<<20 {
		errs = append(errs, fmt.Errorf("ingest: MaxResourceBytes %d must be positive and at most 4 MiB", c.MaxResourceBytes))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest: ShutdownTimeout %s must be positive", c.ShutdownTimeout))
	}
	if c.PatchResponse != "204" && c.PatchResponse != "200" {
		errs = append(errs, fmt.Errorf("ingest: PatchResponse %q must be \"204\" or \"200\"", c.PatchResponse))
	}
	for t, v := range c.PatchResponseByTenant {
		if v != "204" && v != "200" {
			errs = append(errs, fmt.Errorf("ingest: PatchResponseByTenant[%q] = %q must be \"204\" or \"200\"", t, v))
		}
	}
	if c.MaxResults <= 0 || c.BulkMaxOperations <= 0 || c.BulkMaxPayload < 0 {
		errs = append(errs, fmt.Errorf("ingest: MaxResults %d and BulkMaxOperations %d must be positive", c.MaxResults, c.BulkMaxOperations))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest: WriteTimeout %s must be positive", c.WriteTimeout))
	}
	if c.BucketReplicas < 0 {
		errs = append(errs, fmt.Errorf("ingest: BucketReplicas %d must not be negative", c.BucketReplicas))
	}
	return errors.Join(errs...)
}

// Role is one managed Discord role, exposed as an Okta entitlement (/Roles).
type Role struct {
	// ID is the role's snowflake (the entitlement value).
	ID string
	// Name is its display name.
	Name string
	// GuildID is the guild the role belongs to.
	GuildID string
}

// Deps are the service's collaborators.
type Deps struct {
	// JS is the JetStream context; the buckets are created by the caller with
	// eventbus.EnsureBuckets (Run calls it again, idempotent).
	JS jetstream.JetStream
	// Tenants authenticates bearer tokens.
	Tenants *tenants.Set
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// TracerProvider makes the server spans (nil: no tracing).
	TracerProvider trace.TracerProvider
	// Roles lists a tenant's managed Discord roles for /Roles (nil: none).
	Roles func(ctx context.Context, tenantID string) ([]Role, error)
	// Admin serves the operator API and status page under /admin/ (nil:
	// 404). It authenticates with its own credential (services/ingest/admin).
	Admin http.Handler
}

// Service is the SCIM service provider.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	tracer  trace.Tracer
	view    *view
	handler http.Handler

	storeMu sync.RWMutex
	store   *eventbus.Store
	claims  jetstream.KeyValue // UniqueBucket
	stream  jetstream.Stream   // ResourceStream, for the read barrier

	stripes [256]sync.Mutex // uniqueness locks, by hash of the unique value

	addrMu       sync.Mutex
	addr         string
	listening    chan struct{}
	ready        chan struct{}
	readyOnce    sync.Once
	caughtUp     atomic.Bool
	seq          *coalescer
	metrics      *metrics
	restartWatch chan struct{}
}

// New builds the service; it does no I/O (Run does).
func New(cfg Config, deps Deps) (*Service, error) {
	if cfg.BulkMaxPayload == 0 {
		cfg.BulkMaxPayload = cfg.MaxBodyBytes
	}
	if cfg.BucketReplicas == 0 {
		cfg.BucketReplicas = 1
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil {
		return nil, errors.New("ingest: Deps.JS is required")
	}
	if deps.Tenants == nil {
		return nil, errors.New("ingest: Deps.Tenants is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	s := &Service{
		cfg:       cfg,
		deps:      deps,
		log:       deps.Logger,
		tracer:    deps.TracerProvider.Tracer("github.com/scimcord/scimcord/services/ingest"),
		view:      newView(),
		listening: make(chan struct{}),
		ready:     make(chan struct{}),
	}
	s.seq = newCoalescer(s.fetchLastSeq)
	s.metrics = newMetrics()
	s.restartWatch = make(chan struct{}, 1)
	s.handler = s.routes()
	return s, nil
}

// Handler is the full mux: SCIM under BasePath, /healthz and /readyz.
func (s *Service) Handler() http.Handler { return s.handler }

// Ready is closed once the service listens and its view has caught up.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Addr is the actual listen address once Run listens; it blocks until then
// and returns "" if Run ended first or does not listen.
func (s *Service) Addr() string {
	<-s.listening
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

func (s *Service) getStore() *eventbus.Store {
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	return s.store
}

// Run opens the store, keeps the view current, listens and serves until ctx
// ends, then shuts down gracefully within ShutdownTimeout.
func (s *Service) Run(ctx context.Context) error {
	closeListening := sync.OnceFunc(func() { close(s.listening) })
	defer closeListening()

	var ln net.Listener
	if s.cfg.HTTPAddr != "" {
		var err error
		ln, err = net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("ingest: listen on %s: %w", s.cfg.HTTPAddr, err)
		}
		s.addrMu.Lock()
		s.addr = ln.Addr().String()
		s.addrMu.Unlock()
	}
	closeListening()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runStore(runCtx)
	}()
	defer wg.Wait()

	if ln == nil {
		<-ctx.Done()
		return nil
	}
	fresh := &freshConns{m: map[net.Conn]struct{}{}}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A client that announces more body than it sends, or sends it
		// slowly, is cut off (the request gets 400) instead of holding a
		// connection and a goroutine forever.
		ReadTimeout:  s.cfg.HTTPReadTimeout,
		WriteTimeout: s.cfg.HTTPWriteTimeout,
		IdleTimeout:  s.cfg.HTTPIdleTimeout,
		ConnState:    fresh.track,
		BaseContext:  func(net.Listener) context.Context { return context.WithoutCancel(runCtx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.InfoContext(ctx, "scim server listening", "addr", ln.Addr().String(), "base_path", s.cfg.BasePath)
	select {
	case err := <-errc:
		return fmt.Errorf("ingest: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer scancel()
	srv.SetKeepAlivesEnabled(false)
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(sctx) }()
	// Shutdown closes the listener and idle keep-alive connections, waits
	// for requests in flight, but treats a connection that has not sent a
	// request yet (a client's pre-dialled spare) as busy for 5 s: close
	// those now — no request of theirs has been read.
	fresh.closeAll()
	if err := <-done; err != nil {
		s.log.WarnContext(ctx, "graceful shutdown deadline reached, closing connections", "timeout", s.cfg.ShutdownTimeout, "error", err)
		_ = srv.Close()
	}
	return nil
}

// freshConns tracks the connections that have not started a request.
type freshConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.m[c] = struct{}{}
	} else {
		delete(f.m, c)
	}
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.m {
		_ = c.Close()
		delete(f.m, c)
	}
}

// runStore ensures the buckets, opens the store and watches it, retrying
// while NATS is unreachable, until ctx ends.
func (s *Service) runStore(ctx context.Context) {
	for ctx.Err() == nil {
		err := eventbus.EnsureBuckets(ctx, s.deps.JS, eventbus.BucketConfig{Replicas: s.cfg.BucketReplicas})
		var st *eventbus.Store
		if err == nil {
			st, err = eventbus.OpenStore(ctx, s.deps.JS)
		}
		var claims jetstream.KeyValue
		if err == nil {
			claims, err = s.deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: UniqueBucket, History: 1, Replicas: s.cfg.BucketReplicas, Storage: jetstream.FileStorage,
			})
		}
		var stream jetstream.Stream
		if err == nil {
			stream, err = s.deps.JS.Stream(ctx, eventbus.ResourceStream)
		}
		if err == nil {
			s.storeMu.Lock()
			// Every write is a producer span of ingest's provider, a child
			// of the request's server span; the applier continues the trace.
			s.store, s.claims, s.stream = st.WithTracerProvider(s.deps.TracerProvider), claims, stream
			s.storeMu.Unlock()
			break
		}
		s.log.WarnContext(ctx, "resource store not ready, retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if ctx.Err() != nil {
		return
	}
	go s.watchReconnects(ctx)
	s.view.watch(ctx, s.getStore().KV(), s.restartWatch, func() {
		s.caughtUp.Store(true)
		s.readyOnce.Do(func() { close(s.ready) })
	}, func(err error) {
		s.caughtUp.Store(false)
		s.log.WarnContext(ctx, "resource watch interrupted, restarting", "error", err)
	})
}

// requestWatchRestart asks the view's watch to be re-created.
func (s *Service) requestWatchRestart() {
	select {
	case s.restartWatch <- struct{}{}:
	default:
	}
}

// watchReconnects restarts the watch after the NATS connection reconnected:
// the server may have lost the watch's ephemeral consumer.
func (s *Service) watchReconnects(ctx context.Context) {
	nc := s.deps.JS.Conn()
	if nc == nil {
		return
	}
	last := nc.Stats().Reconnects
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := nc.Stats().Reconnects; n != last {
				last = n
				s.log.InfoContext(ctx, "NATS reconnected, resuming the resource watch")
				s.requestWatchRestart()
			}
		}
	}
}

// fetchLastSeq asks JetStream for the resource stream's last sequence.
func (s *Service) fetchLastSeq(ctx context.Context) (uint64, error) {
	s.storeMu.RLock()
	st := s.stream
	s.storeMu.RUnlock()
	if !s.connected() {
		return 0, fmt.Errorf("ingest: stream info: NATS not connected: %w", eventbus.ErrUnavailable)
	}
	if st == nil {
		return 0, fmt.Errorf("ingest: stream %s not open: %w", eventbus.ResourceStream, eventbus.ErrUnavailable)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("ingest: stream info %s: %w", eventbus.ResourceStream, errors.Join(eventbus.ErrUnavailable, err))
	}
	return info.State.LastSeq, nil
}

// sync waits until the view holds every write acknowledged before the call
// (by any replica). When JetStream is unreachable it returns at once: reads
// are then served from the view as it is.
func (s *Service) sync(ctx context.Context) {
	if !s.cfg.ConsistentReads {
		return
	}
	_ = s.catchUp(ctx, 2*time.Second)
}

// writeBarrier is sync for read-modify-write requests, and strict: every
// decision a write takes from the view (skip an unchanged membership or
// attribute, the member set a replace or delete closes, the revision a
// compare-and-set expects) must be taken against a view that holds every
// write acknowledged before the request — by any replica. Otherwise a
// replica whose watch lags would skip a write another replica has just made
// necessary, and answer 2xx for a change it never stored. It fails with
// ErrUnavailable (503) when the view cannot be brought up to date within
// WriteTimeout. It does not depend on ConsistentReads.
func (s *Service) writeBarrier(ctx context.Context) error {
	if err := s.catchUp(ctx, s.cfg.WriteTimeout); err != nil {
		return fmt.Errorf("ingest: write barrier: %w", errors.Join(eventbus.ErrUnavailable, err))
	}
	return nil
}

// catchUp asks JetStream for the stream's last sequence (one request shared
// by concurrent callers, started after this call) and waits until the
// view's watch has delivered it.
func (s *Service) catchUp(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seq, err := s.seq.do(ctx)
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, min(500*time.Millisecond, timeout/2))
	err = s.view.waitFor(wctx, seq)
	wcancel()
	if err != nil && ctx.Err() == nil {
		// The watch is behind the stream for too long: it may have lost its
		// consumer; re-create it and wait for the rest of the deadline.
		s.requestWatchRestart()
		err = s.view.waitFor(ctx, seq)
	}
	if err != nil {
		return fmt.Errorf("ingest: view behind stream sequence %d: %w", seq, err)
	}
	return nil
}

// coalescer shares one in-flight fetch among concurrent callers, starting a
// new one for callers that arrive while a fetch is already running (so each
// caller sees a value fetched after it arrived).
type coalescer struct {
	fetch func(context.Context) (uint64, error)
	mu    sync.Mutex
	cur   *call
	next  *call
}

type call struct {
	done chan struct{}
	val  uint64
	err  error
}

func newCoalescer(f func(context.Context) (uint64, error)) *coalescer { return &coalescer{fetch: f} }

func (c *coalescer) do(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	var cl *call
	switch {
	case c.cur == nil:
		cl = &call{done: make(chan struct{})}
		c.cur = cl
		go c.run(cl)
	case c.next == nil:
		cl = &call{done: make(chan struct{})}
		c.next = cl
	default:
		cl = c.next
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *coalescer) run(cl *call) {
	for cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cl.val, cl.err = c.fetch(ctx)
		cancel()
		close(cl.done)
		c.mu.Lock()
		cl = c.next
		c.cur = cl
		c.next = nil
		c.mu.Unlock()
	}
}
