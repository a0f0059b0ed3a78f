// Package discordemu is a local emulator of the part of Discord's REST API the
// scimcord product uses: guilds, roles, members, bans, guilds.join and OAuth2,
// with Discord's status and error codes, permission and hierarchy rules, rate
// limits, a request recorder, fault injection and an admin API under /_emu.
// See /work/shared/design/discord-emulator.md for the spec it implements.
package discordemu

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Emulator is a running Discord REST emulator.
type Emulator struct {
	cfgMu sync.RWMutex
	cfg   Config

	log   *slog.Logger
	clock Clock

	mu        sync.Mutex // guards w, snapshots, history
	w         *world
	snapshots map[string][]byte
	history   []histEntry
	stateOK   bool // the state file existed at start

	lim    *limiter
	rec    *Recorder
	faults *faultSet

	rngMu sync.Mutex
	rng   *mrand.Rand

	ln       net.Listener
	srv      *http.Server
	adminLn  net.Listener
	adminSrv *http.Server
	url      string
	adminURL string
	client   *http.Client
	tls      *testCert // nil unless Config.TLS
	admin    *Admin
	handler  http.Handler
	connSeq  atomic.Int64
	closed   atomic.Bool
}

type histEntry struct {
	at   time.Time
	data []byte
}

type ctxKey int

const connKey ctxKey = 1

type connInfo struct {
	id   int64
	conn net.Conn
}

// New creates an emulator and starts listening on cfg.Listen (127.0.0.1:0 when
// empty). When cfg.StatePath names an existing file, the state is loaded from it.
func New(cfg Config) (*Emulator, error) {
	e, err := newEmulator(cfg)
	if err != nil {
		return nil, err
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	scheme := "http"
	if cfg.TLS {
		c, err := newTestCert(time.Now(), addr, cfg.AdminListen)
		if err != nil {
			return nil, err
		}
		e.tls, scheme = c, "https"
		if cfg.TLSCertFile != "" {
			if err := os.WriteFile(cfg.TLSCertFile, c.pem, 0o644); err != nil {
				return nil, fmt.Errorf("discordemu: write tls certificate: %w", err)
			}
		}
	} else if cfg.TLSCertFile != "" {
		return nil, errors.New("discordemu: tls_cert_file is set but tls is not")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("discordemu: listen %s: %w", addr, err)
	}
	e.ln = ln
	e.url = scheme + "://" + ln.Addr().String()
	e.adminURL = e.url
	e.srv = &http.Server{
		Handler:           e.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey, &connInfo{id: e.connSeq.Add(1), conn: c})
		},
		ErrorLog: slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	go func() { _ = e.srv.Serve(e.wrapTLS(ln)) }()
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("discordemu: admin listen %s: %w", cfg.AdminListen, err)
		}
		e.adminLn = aln
		e.adminURL = scheme + "://" + aln.Addr().String()
		e.adminSrv = &http.Server{Handler: http.HandlerFunc(e.serveAdmin), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = e.adminSrv.Serve(e.wrapTLS(aln)) }()
	}
	e.client = e.newHTTPClient()
	adminTransport := &http.Transport{}
	if e.tls != nil {
		adminTransport.TLSClientConfig = e.tls.clientConfig()
	}
	e.admin = &Admin{base: e.adminURL, token: cfg.AdminToken, hc: &http.Client{Transport: adminTransport}}
	e.log.Info("discordemu listening", "url", e.url, "admin", e.adminURL, "profile", cfg.Profile, "tls", cfg.TLS)
	return e, nil
}

func newEmulator(cfg Config) (*Emulator, error) {
	cfg.normalize()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	clk := cfg.Clock
	if clk == nil {
		clk = realClock{}
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = int64(binary.LittleEndian.Uint64(b[:]))
	}
	e := &Emulator{
		cfg: cfg, log: log, clock: clk, w: newWorld(), snapshots: map[string][]byte{},
		lim: newLimiter(), faults: &faultSet{},
		rng: mrand.New(mrand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
	}
	e.rec = newRecorder(func() float64 { c := e.config(); return c.scale() }, e.lim)
	if cfg.StatePath != "" {
		ok, err := e.loadState(cfg.StatePath)
		if err != nil {
			return nil, err
		}
		e.stateOK = ok
	}
	// No http.ServeMux: it cleans paths and answers "//x" or "/x/../y" with its
	// own redirects, which Discord never sends.
	adminHere := cfg.AdminListen == ""
	e.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/api" || strings.HasPrefix(p, "/api/"):
			e.serveAPI(w, r)
		case p == "/oauth2/authorize":
			e.serveAuthorize(w, r)
		case adminHere && strings.HasPrefix(p, "/_emu/"):
			e.serveAdmin(w, r)
		default:
			writeJSON(w, http.StatusNotFound, errBody(0, "404: Not Found"))
		}
	})
	return e, nil
}

// URL returns the base URL of the main listener, e.g. http://127.0.0.1:40123.
func (e *Emulator) URL() string { return e.url }

// AdminURL returns the base URL serving /_emu (the main URL unless AdminListen is set).
func (e *Emulator) AdminURL() string { return e.adminURL }

// Handler returns the emulator's HTTP handler, for embedding in another server.
func (e *Emulator) Handler() http.Handler { return e.handler }

// HTTPClient returns a client whose transport sends requests for discord.com,
// discordapp.com and cdn.discordapp.com to this emulator. It has no timeout.
func (e *Emulator) HTTPClient() *http.Client { return e.client }

// Admin returns the typed client of the admin API.
func (e *Emulator) Admin() *Admin { return e.admin }

// Recorder returns the request recorder.
func (e *Emulator) Recorder() *Recorder { return e.rec }

// StateFileExisted reports whether Config.StatePath existed when the emulator started.
func (e *Emulator) StateFileExisted() bool { return e.stateOK }

// Close stops the listeners immediately.
func (e *Emulator) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	if e.srv != nil {
		errs = append(errs, e.srv.Close())
	}
	if e.adminSrv != nil {
		errs = append(errs, e.adminSrv.Close())
	}
	if t, ok := e.client.Transport.(*rewriteTransport); ok {
		t.base.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Shutdown stops the listeners gracefully, waiting for in-flight requests until ctx ends.
func (e *Emulator) Shutdown(ctx context.Context) error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	if e.srv != nil {
		errs = append(errs, e.srv.Shutdown(ctx))
	}
	if e.adminSrv != nil {
		errs = append(errs, e.adminSrv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Run starts an emulator, loads fixturePath when the state file did not exist
// yet (or when there is no state file), serves until ctx ends and shuts down.
func Run(ctx context.Context, cfg Config, fixturePath string) error {
	e, err := New(cfg)
	if err != nil {
		return err
	}
	if fixturePath != "" && !e.stateOK {
		data, err := os.ReadFile(fixturePath)
		if err != nil {
			_ = e.Close()
			return fmt.Errorf("discordemu: read fixture: %w", err)
		}
		if err := e.LoadFixture(data); err != nil {
			_ = e.Close()
			return fmt.Errorf("discordemu: load fixture %s: %w", fixturePath, err)
		}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.Shutdown(sctx)
}

func (e *Emulator) config() Config {
	e.cfgMu.RLock()
	defer e.cfgMu.RUnlock()
	return e.cfg
}

func (e *Emulator) now() time.Time { return e.clock.Now() }

func (e *Emulator) randFloat() float64 {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.Float64()
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (e *Emulator) randString(n int) string {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[e.rng.IntN(len(alnum))]
	}
	return string(b)
}

// newID returns a new snowflake. Caller holds e.mu.
func (e *Emulator) newIDLocked() string {
	return e.w.Snow.next(e.now(), e.config().IDEpochMS)
}

// rewriteTransport sends Discord hosts to the emulator.
type rewriteTransport struct {
	base   *http.Transport
	scheme string
	host   string
}

var discordHosts = map[string]bool{
	"discord.com": true, "www.discord.com": true, "discordapp.com": true, "www.discordapp.com": true,
	"cdn.discordapp.com": true, "canary.discord.com": true, "ptb.discord.com": true,
}

// RoundTrip rewrites the scheme and host of Discord URLs, keeping the path.
func (t *rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if discordHosts[req.URL.Hostname()] {
		r2 := req.Clone(req.Context())
		r2.URL.Scheme = t.scheme
		r2.URL.Host = t.host
		r2.Host = t.host
		req = r2
	}
	return t.base.RoundTrip(req)
}

func (e *Emulator) newHTTPClient() *http.Client {
	base := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	scheme := "http"
	if e.tls != nil {
		base.TLSClientConfig, scheme = e.tls.clientConfig(), "https"
	}
	return &http.Client{Transport: &rewriteTransport{base: base, scheme: scheme, host: e.ln.Addr().String()}}
}

// wrapTLS serves ln with the emulator's certificate when Config.TLS is set.
func (e *Emulator) wrapTLS(ln net.Listener) net.Listener {
	if e.tls == nil {
		return ln
	}
	return tls.NewListener(ln, e.tls.serverConfig())
}
