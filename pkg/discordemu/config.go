package discordemu

import (
	"log/slog"
	"time"
)

// Config configures an Emulator. The JSON form (used by GET/PUT /_emu/config and
// by the config file of the standalone binary) uses the snake_case names of the spec.
type Config struct {
	// Listen is the address of the main listener. "" means 127.0.0.1:0 (a free port).
	Listen string `json:"listen,omitempty"`
	// AdminListen, when set, serves the /_emu admin API on its own listener instead
	// of the main one.
	AdminListen string `json:"admin_listen,omitempty"`
	// AdminToken, when set, must be sent as X-Emu-Admin-Token on admin requests.
	AdminToken string `json:"admin_token,omitempty"`
	// TLS serves HTTPS (on both listeners) with a self-signed certificate made at
	// start. HTTPClient and DialingHTTPClient trust it; CertificatePEM returns it
	// for other processes. It names loopback, localhost, the listen host and
	// Discord's hostnames, so a client that dials the emulator for every host
	// verifies it without InsecureSkipVerify.
	TLS bool `json:"tls,omitempty"`
	// TLSCertFile, with TLS, is where the certificate's PEM is written at start
	// (mode 0644), for clients in other processes: curl --cacert FILE.
	TLSCertFile string `json:"tls_cert_file,omitempty"`
	// StatePath is a JSON state file. "" means no persistence. It is loaded at start
	// when it exists, and rewritten (atomic rename) after every committed mutation.
	StatePath string `json:"state_path,omitempty"`
	// Profile selects the rate-limit table: "realistic" (default), "fast" (same
	// limits, time scale multiplied by 0.01) or "off" (no per-route or global limits).
	Profile string `json:"profile"`
	// TimeScale multiplies every rate-limit window, cooldown and ban duration.
	TimeScale float64 `json:"time_scale"`
	// GlobalLimitPerSec is the global limit per rate-limit identity (§8.5).
	GlobalLimitPerSec int `json:"global_limit_per_sec"`
	// InvalidRequestLimit is the number of 401/403/429 responses per client IP per
	// scaled 10 minutes that triggers the Cloudflare ban (§8.6).
	InvalidRequestLimit int `json:"invalid_request_limit"`
	// CloudflareBanSeconds is the (scaled) duration of the Cloudflare ban.
	CloudflareBanSeconds float64 `json:"cloudflare_ban_seconds"`
	// CloudflareBanFormat is "json" or "html".
	CloudflareBanFormat string `json:"cloudflare_ban_format"`
	// OAuthCodeTTLSeconds is the lifetime of authorization codes (not scaled).
	OAuthCodeTTLSeconds int `json:"oauth_code_ttl_seconds"`
	// AccessTokenTTLSeconds is the lifetime of access tokens (not scaled).
	AccessTokenTTLSeconds int `json:"access_token_ttl_seconds"`
	// Latency is added to every API response.
	Latency LatencyConfig `json:"latency_ms"`
	// IDEpochMS, when non-zero, makes generated snowflakes deterministic: their
	// timestamp starts at this Unix millisecond and only advances with a counter.
	IDEpochMS int64 `json:"id_epoch_ms,omitempty"`
	// Seed seeds the RNG (jitter, fault probabilities, token strings). 0 = random.
	Seed int64 `json:"seed,omitempty"`
	// ConsistencyLagMS makes GET routes return state as of N ms ago (§7). 0 = off.
	ConsistencyLagMS int `json:"consistency_lag_ms"`
	// Chaos picks a random fault action for a fraction of requests. Off by default.
	Chaos ChaosConfig `json:"chaos"`
	// Strict holds the knobs for uncertain behaviour (§13).
	Strict StrictConfig `json:"strict"`
	// RateLimit holds the rate-limit knobs (§13).
	RateLimit RateLimitConfig `json:"ratelimit"`
	// Logger receives the emulator's logs. nil discards them.
	Logger *slog.Logger `json:"-"`
	// Clock overrides the emulator clock (for the emulator's own unit tests).
	// nil means real time.
	Clock Clock `json:"-"`
}

// LatencyConfig adds Base plus a uniformly random 0..Jitter milliseconds to every response.
type LatencyConfig struct {
	Base   int `json:"base"`
	Jitter int `json:"jitter"`
}

// ChaosConfig applies a random action from Actions with the given probability.
type ChaosConfig struct {
	Probability float64       `json:"probability"`
	Actions     []FaultAction `json:"actions,omitempty"`
}

// StrictConfig holds the knobs of §13. The zero values of the string fields mean
// the strict default.
type StrictConfig struct {
	// UnknownRoleInPatch: "10011" (default, 404) or "50035".
	UnknownRoleInPatch string `json:"unknown_role_in_patch"`
	// CheckUntouchedRoles: true (default; nil means true) also rejects a PATCH that
	// merely keeps a role at or above the bot. Use Bool(false) for the alternative.
	CheckUntouchedRoles *bool `json:"check_untouched_roles"`
	// EveryoneInRoles: "reject" (default, 400 50035) or "ignore".
	EveryoneInRoles string `json:"everyone_in_roles"`
	// LegacyReasonQuery: "ignore" (default, v10 behaviour) or "honour".
	LegacyReasonQuery string `json:"legacy_reason_query"`
	// ScopeError: "401" (default) or "403-50026".
	ScopeError string `json:"scope_error"`
	// MaxRoles is the role cap (managed roles count, @everyone does not). Default 250.
	MaxRoles int `json:"max_roles"`
	// PatchMember204 makes PATCH member answer 204 with no body.
	PatchMember204 bool `json:"patch_member_204"`
	// NonmemberBanLimit, when > 0, is the number of non-member bans per scaled hour
	// before 400 30035.
	NonmemberBanLimit int `json:"nonmember_ban_limit"`
	// InvalidRoleStatus is the HTTP status of 50028: 400 (default) or 403.
	InvalidRoleStatus int `json:"invalid_role_status"`
	// MaxGuildsStatus is the HTTP status of 30001: 400 (default) or 403.
	MaxGuildsStatus int `json:"max_guilds_status"`
	// InvalidClientStatus is the HTTP status of OAuth2 invalid_client: 401 (default) or 400.
	InvalidClientStatus int `json:"invalid_client_status"`
}

// RateLimitConfig holds the rate-limit knobs.
type RateLimitConfig struct {
	// Algorithm: "" (per table), "fixed" or "sliding" for every bucket.
	Algorithm string `json:"algorithm"`
}

// DefaultConfig returns the strict default configuration of the spec (§1, §13).
func DefaultConfig() Config {
	return Config{
		Profile:               "realistic",
		TimeScale:             1.0,
		GlobalLimitPerSec:     50,
		InvalidRequestLimit:   10000,
		CloudflareBanSeconds:  3600,
		CloudflareBanFormat:   "json",
		OAuthCodeTTLSeconds:   100,
		AccessTokenTTLSeconds: 604800,
		Strict: StrictConfig{
			UnknownRoleInPatch:  "10011",
			CheckUntouchedRoles: Bool(true),
			EveryoneInRoles:     "reject",
			LegacyReasonQuery:   "ignore",
			ScopeError:          "401",
			MaxRoles:            250,
			InvalidRoleStatus:   400,
			MaxGuildsStatus:     400,
			InvalidClientStatus: 401,
		},
	}
}

// normalize fills zero values with defaults.
func (c *Config) normalize() {
	d := DefaultConfig()
	if c.Profile == "" {
		c.Profile = d.Profile
	}
	if c.TimeScale <= 0 {
		c.TimeScale = d.TimeScale
	}
	if c.GlobalLimitPerSec <= 0 {
		c.GlobalLimitPerSec = d.GlobalLimitPerSec
	}
	if c.InvalidRequestLimit <= 0 {
		c.InvalidRequestLimit = d.InvalidRequestLimit
	}
	if c.CloudflareBanSeconds <= 0 {
		c.CloudflareBanSeconds = d.CloudflareBanSeconds
	}
	if c.CloudflareBanFormat == "" {
		c.CloudflareBanFormat = d.CloudflareBanFormat
	}
	if c.OAuthCodeTTLSeconds <= 0 {
		c.OAuthCodeTTLSeconds = d.OAuthCodeTTLSeconds
	}
	if c.AccessTokenTTLSeconds <= 0 {
		c.AccessTokenTTLSeconds = d.AccessTokenTTLSeconds
	}
	s := &c.Strict
	if s.UnknownRoleInPatch == "" {
		s.UnknownRoleInPatch = d.Strict.UnknownRoleInPatch
	}
	if s.CheckUntouchedRoles == nil {
		s.CheckUntouchedRoles = Bool(true)
	}
	if s.EveryoneInRoles == "" {
		s.EveryoneInRoles = d.Strict.EveryoneInRoles
	}
	if s.LegacyReasonQuery == "" {
		s.LegacyReasonQuery = d.Strict.LegacyReasonQuery
	}
	if s.ScopeError == "" {
		s.ScopeError = d.Strict.ScopeError
	}
	if s.MaxRoles <= 0 {
		s.MaxRoles = d.Strict.MaxRoles
	}
	if s.InvalidRoleStatus == 0 {
		s.InvalidRoleStatus = d.Strict.InvalidRoleStatus
	}
	if s.MaxGuildsStatus == 0 {
		s.MaxGuildsStatus = d.Strict.MaxGuildsStatus
	}
	if s.InvalidClientStatus == 0 {
		s.InvalidClientStatus = d.Strict.InvalidClientStatus
	}
}

// scale returns the effective time scale (profile "fast" multiplies by 0.01).
func (c Config) scale() float64 {
	s := c.TimeScale
	if c.Profile == "fast" {
		s *= 0.01
	}
	return s
}

// scaled converts a duration in emulated seconds to real time.
func (c Config) scaled(seconds float64) time.Duration {
	return time.Duration(seconds * c.scale() * float64(time.Second))
}

// Clock is the emulator clock. The default is real time.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ManualClock is a settable clock for the emulator's own unit tests.
type ManualClock struct {
	mu  chan struct{}
	now time.Time
}

// NewManualClock returns a ManualClock set to t.
func NewManualClock(t time.Time) *ManualClock {
	c := &ManualClock{mu: make(chan struct{}, 1), now: t}
	return c
}

// Now returns the current manual time.
func (c *ManualClock) Now() time.Time {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	return c.now
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	c.now = c.now.Add(d)
}

// Bool returns a pointer to b (for StrictConfig.CheckUntouchedRoles).
func Bool(b bool) *bool { return &b }
