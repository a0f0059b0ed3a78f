// Package admin is scimcord's operator API and status page, served by ingest
// (the only externally reachable service) under /admin/ with its own
// credential (never a SCIM token). It reads the SCIM state from JetStream,
// asks mapping over gRPC (Explain, Preview, rule sets) and the applier over
// NATS request/reply (sync status with the live Discord roles, dead letters,
// replay, reconcile, the status overview).
//
// Authentication: an "Authorization: Bearer <admin token>" header (the CLI),
// or a session cookie set by /admin/login — a form, or GET
// /admin/login?token=… for scripted browsers — that holds a digest of the
// token, never the token itself. Every comparison is constant-time; anything
// else is 401. The cookie value is derived from the token alone: every
// session stays valid as long as the token does, so rotating the admin
// token (and restarting) is how sessions are revoked. Answers forbid framing
// (X-Frame-Options DENY, CSP frame-ancestors 'none').
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/scimcord/scimcord/pkg/eventbus"
	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/telemetry"
	"github.com/scimcord/scimcord/pkg/tenants"
)

// Config configures the operator API.
type Config struct {
	// Token is the admin credential (SCIMCORD_ADMIN_TOKEN); required.
	Token string
	// RequestTimeout bounds a request to the applier or mapping (default 60s;
	// a dry-run reconcile lists a whole guild).
	RequestTimeout time.Duration
}

// DefaultConfig returns the defaults (Token still to be set).
func DefaultConfig() Config { return Config{RequestTimeout: 60 * time.Second} }

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	var errs []error
	if len(c.Token) < 16 {
		errs = append(errs, errors.New("admin: the admin token must be at least 16 characters"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("admin: RequestTimeout must be > 0"))
	}
	return errors.Join(errs...)
}

// ErrTokenIsSCIMToken refuses an admin token that is also a tenant's SCIM
// token.
var ErrTokenIsSCIMToken = errors.New("the admin token is also a SCIM token")

// Deps are the operator API's collaborators.
type Deps struct {
	// JS reads the SCIM state and carries the requests to the applier.
	JS jetstream.JetStream
	// Tenants lists the tenants and their guilds.
	Tenants *tenants.Set
	// Mapping is a client of the mapping service (nil: explain and rules
	// answer 503).
	Mapping mappingv1.MappingServiceClient
	Logger  *slog.Logger
	// TracerProvider traces the admin requests (ingest's provider).
	TracerProvider trace.TracerProvider
}

// Server is the operator API and status page; it is an http.Handler.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	tracer  trace.Tracer
	session string // cookie value: a digest of the token
	mux     *http.ServeMux
}

// cookieName is the session cookie of the status page.
const cookieName = "scimcord_admin"

// New builds the server; it does no I/O.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultConfig().RequestTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil || deps.Tenants == nil {
		return nil, errors.New("admin: Deps.JS and Deps.Tenants are required")
	}
	if t, err := deps.Tenants.Authenticate(cfg.Token); err == nil {
		// One secret for both would let every IdP operate scimcord.
		return nil, fmt.Errorf("admin: %w (tenant %q): choose a separate SCIMCORD_ADMIN_TOKEN", ErrTokenIsSCIMToken, t.ID)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	sum := sha256.Sum256([]byte("scimcord-admin-session\x00" + cfg.Token))
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, session: hex.EncodeToString(sum[:]),
		tracer: deps.TracerProvider.Tracer("github.com/scimcord/scimcord/services/ingest/admin")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/login", s.serveLogin)
	mux.HandleFunc("POST /admin/login", s.serveLogin)
	mux.HandleFunc("POST /admin/logout", s.serveLogout)
	mux.Handle("GET /admin/{$}", s.auth(http.HandlerFunc(s.servePage)))
	mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusSeeOther))
	mux.Handle("GET /admin/api/v1/status", s.auth(s.api(s.apiStatus)))
	mux.Handle("GET /admin/api/v1/explain", s.auth(s.api(s.apiExplain)))
	mux.Handle("GET /admin/api/v1/overview", s.auth(s.api(s.apiOverview)))
	mux.Handle("GET /admin/api/v1/dlq", s.auth(s.api(s.apiDLQList)))
	mux.Handle("POST /admin/api/v1/dlq/replay", s.auth(s.api(s.apiDLQReplay)))
	mux.Handle("POST /admin/api/v1/reconcile", s.auth(s.api(s.apiReconcile)))
	mux.Handle("POST /admin/api/v1/rules/apply", s.auth(s.api(s.apiRulesApply)))
	s.mux = mux
	return s, nil
}

// ServeHTTP traces the request (a server span of ingest's provider; the
// traceresponse header names it) and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := telemetry.Propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header)) // continue a caller's trace
	ctx, span := s.tracer.Start(ctx, "admin "+r.Method+" "+routeName(r.URL.Path), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	defer span.End()
	if sc := span.SpanContext(); sc.IsValid() {
		w.Header().Set("traceresponse", fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags()))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY") // no clickjacking of the page or the login form
	w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

// routeName keeps span names low-cardinality.
func routeName(p string) string {
	if strings.HasPrefix(p, "/admin/api/v1/") {
		return p
	}
	if strings.HasPrefix(p, "/admin/login") {
		return "/admin/login"
	}
	return "/admin/"
}

func (s *Server) tokenOK(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1
}

// authenticated accepts the bearer token, or — for the page only, never
// the API with its POSTs (no cross-site request can use the cookie there) —
// the session cookie.
func (s *Server) authenticated(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return s.tokenOK(strings.TrimSpace(tok))
	}
	if strings.HasPrefix(r.URL.Path, "/admin/api/") {
		return false
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1
	}
	return false
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authenticated(r) {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/admin/api/") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scimcord-admin"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "authentication required: the admin token (SCIMCORD_ADMIN_TOKEN)"})
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = pageTmpl.ExecuteTemplate(w, "login", loginView{})
	})
}

// serveLogin checks the token of the form (POST) or of ?token= (GET, for
// scripted browsers), sets the session cookie and redirects to the page
// without the token in the URL (to next= when it is a page under /admin/).
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		tok = r.PostFormValue("token")
	}
	if !s.tokenOK(tok) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = pageTmpl.ExecuteTemplate(w, "login", loginView{Failed: tok != ""})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.session, Path: "/admin", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
		MaxAge: int((12 * time.Hour).Seconds())})
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	next = safeNext(next)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext is the page to go to after login: next when, cleaned of dot
// segments (/admin/../evil is /evil), it is a page under /admin/ other than
// the login itself; otherwise /admin/ — never an open redirect.
func safeNext(next string) string {
	if next == "" || strings.ContainsAny(next, "\\\r\n\t") || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/admin/"
	}
	p, query, hasQuery := strings.Cut(next, "?")
	if strings.Contains(p, "%") {
		return "/admin/" // an encoded dot segment or slash: refuse rather than decode twice
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if !strings.HasPrefix(clean, "/admin/") || strings.HasPrefix(clean, "/admin/login") {
		return "/admin/"
	}
	if hasQuery {
		clean += "?" + query
	}
	return clean
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/admin", MaxAge: -1, HttpOnly: true})
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

// tenant picks the tenant of a request: ?tenant=, or the only one.
func (s *Server) tenant(r *http.Request) (*tenants.Tenant, error) {
	id := r.URL.Query().Get("tenant")
	if id == "" {
		all := s.deps.Tenants.All()
		if len(all) == 1 {
			return all[0], nil
		}
		ids := make([]string, 0, len(all))
		for _, t := range all {
			ids = append(ids, t.ID)
		}
		return nil, badRequest("several tenants (%s): name one with tenant=", strings.Join(ids, ", "))
	}
	t, ok := s.deps.Tenants.Get(id)
	if !ok {
		return nil, notFound("no tenant %q", id)
	}
	return t, nil
}

func (s *Server) store(ctx context.Context) (*eventbus.Store, error) {
	st, err := eventbus.OpenStore(ctx, s.deps.JS)
	if err != nil {
		return nil, unavailable("SCIM store: %v", err)
	}
	return st, nil
}
