// Package tenants reads the tenant configuration (SCIMCORD_CONFIG): which
// bearer tokens select which tenant, which Discord guilds a tenant drives and
// with which deprovisioning policy. Tokens are stored only as SHA-256 hashes
// and compared in constant time.
package tenants

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Action is what the applier does to a member on deactivation or deletion.
type Action string

// The deprovisioning actions.
const (
	ActionStrip Action = "strip" // remove the managed roles
	ActionKick  Action = "kick"  // remove the member from the guild
	ActionBan   Action = "ban"   // ban the member
	ActionNone  Action = "none"  // leave the member as they are
)

func (a Action) valid() bool {
	switch a {
	case ActionStrip, ActionKick, ActionBan, ActionNone:
		return true
	}
	return false
}

// Guild is one Discord guild that a tenant drives.
type Guild struct {
	// ID is the guild's snowflake.
	ID string `yaml:"id" json:"id"`
	// OnDeactivate applies to active=false; default strip.
	OnDeactivate Action `yaml:"on_deactivate" json:"on_deactivate"`
	// OnDelete applies to DELETE /Users/{id}; default kick.
	OnDelete Action `yaml:"on_delete" json:"on_delete"`
	// GracePeriod, optional, delays a kick or ban in this guild after the
	// deactivation or deletion (the managed roles go at once; a
	// re-activation within it restores them): a Go duration such as "72h"
	// or "30m", >= 0. Empty = the applier's default (SCIMCORD_GRACE_PERIOD);
	// "0s" = no grace in this guild.
	GracePeriod string `yaml:"grace_period,omitempty" json:"grace_period,omitempty"`
	// BrakeMaxCount and BrakeMaxShare, optional, set this guild's
	// mass-removal brake: removals from more than max(count, share × guild
	// members) members in one burst are held until an operator allows them.
	// Unset = the applier's defaults (SCIMCORD_BRAKE_MAX_COUNT,
	// SCIMCORD_BRAKE_MAX_SHARE); count >= 0 (0 = no brake in this guild),
	// share within 0..1.
	BrakeMaxCount *int     `yaml:"brake_max_count,omitempty" json:"brake_max_count,omitempty"`
	BrakeMaxShare *float64 `yaml:"brake_max_share,omitempty" json:"brake_max_share,omitempty"`
}

// Grace returns the guild's grace period and whether it sets one (validated
// by New; an invalid value reads as unset).
func (g Guild) Grace() (time.Duration, bool) {
	if g.GracePeriod == "" {
		return 0, false
	}
	d, err := time.ParseDuration(g.GracePeriod)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

// Tenant is one IdP connection.
type Tenant struct {
	// ID names the tenant in keys, logs and metrics ([A-Za-z0-9_-]).
	ID string `yaml:"id" json:"id"`
	// Name is a human-readable label.
	Name string `yaml:"name" json:"name"`
	// TokenSHA256 lists the hex SHA-256 hashes of the tenant's bearer tokens;
	// several at once allow rotation without downtime.
	TokenSHA256 []string `yaml:"token_sha256" json:"-"`
	// Guilds are the Discord guilds this tenant drives.
	Guilds []Guild `yaml:"guilds" json:"guilds"`

	hashes [][]byte
}

// File is the YAML document named by SCIMCORD_CONFIG.
type File struct {
	Tenants []*Tenant `yaml:"tenants"`
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var snowflakeRe = regexp.MustCompile(`^[0-9]{17,20}$`)

// Set is a validated set of tenants.
type Set struct {
	tenants []*Tenant
	byID    map[string]*Tenant
}

// Parse decodes and validates a tenant file.
func Parse(data []byte) (*Set, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tenants: decode: %w", err)
	}
	return New(f.Tenants...)
}

// Load reads and parses a tenant file.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants: read %s: %w", path, err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// New validates tenants, fills defaults and builds a Set.
func New(ts ...*Tenant) (*Set, error) {
	s := &Set{byID: map[string]*Tenant{}}
	seenHash := map[string]string{}
	for i, t := range ts {
		if t == nil || !idRe.MatchString(t.ID) {
			return nil, fmt.Errorf("tenants[%d]: id must match %s", i, idRe)
		}
		if _, dup := s.byID[t.ID]; dup {
			return nil, fmt.Errorf("tenants[%d]: duplicate id %q", i, t.ID)
		}
		if len(t.TokenSHA256) == 0 {
			return nil, fmt.Errorf("tenant %q: token_sha256 needs at least one hash", t.ID)
		}
		t.hashes = nil
		for j, h := range t.TokenSHA256 {
			b, err := hex.DecodeString(strings.TrimSpace(h))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("tenant %q: token_sha256[%d] is not a hex SHA-256 hash", t.ID, j)
			}
			if other, dup := seenHash[string(b)]; dup {
				return nil, fmt.Errorf("tenant %q: token_sha256[%d] is also a token of tenant %q", t.ID, j, other)
			}
			seenHash[string(b)] = t.ID
			t.hashes = append(t.hashes, b)
		}
		for j := range t.Guilds {
			g := &t.Guilds[j]
			if !snowflakeRe.MatchString(g.ID) {
				return nil, fmt.Errorf("tenant %q: guilds[%d].id %q is not a snowflake", t.ID, j, g.ID)
			}
			if g.OnDeactivate == "" {
				g.OnDeactivate = ActionStrip
			}
			if g.OnDelete == "" {
				g.OnDelete = ActionKick
			}
			if !g.OnDeactivate.valid() || !g.OnDelete.valid() {
				return nil, fmt.Errorf("tenant %q: guild %s: policy must be strip, kick, ban or none", t.ID, g.ID)
			}
			if g.GracePeriod != "" {
				if d, err := time.ParseDuration(g.GracePeriod); err != nil || d < 0 {
					return nil, fmt.Errorf("tenant %q: guild %s: grace_period %q must be a duration >= 0 such as \"72h\" or \"30m\"", t.ID, g.ID, g.GracePeriod)
				}
			}
			if g.BrakeMaxCount != nil && *g.BrakeMaxCount < 0 {
				return nil, fmt.Errorf("tenant %q: guild %s: brake_max_count %d must be >= 0 (0 = no brake)", t.ID, g.ID, *g.BrakeMaxCount)
			}
			if g.BrakeMaxShare != nil && !(*g.BrakeMaxShare >= 0 && *g.BrakeMaxShare <= 1) {
				return nil, fmt.Errorf("tenant %q: guild %s: brake_max_share %v must be within 0..1", t.ID, g.ID, *g.BrakeMaxShare)
			}
		}
		s.tenants = append(s.tenants, t)
		s.byID[t.ID] = t
	}
	return s, nil
}

// ErrUnknownToken means no tenant has the presented token.
var ErrUnknownToken = errors.New("tenants: unknown token")

// HashToken returns the hex SHA-256 of a token, as stored in token_sha256.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Authenticate returns the tenant whose token this is. It compares the
// token's hash against every configured hash in constant time, so timing
// reveals neither which tenant nor how much of a hash matched.
func (s *Set) Authenticate(token string) (*Tenant, error) {
	if token == "" {
		return nil, ErrUnknownToken
	}
	sum := sha256.Sum256([]byte(token))
	var found *Tenant
	for _, t := range s.tenants {
		for _, h := range t.hashes {
			if subtle.ConstantTimeCompare(sum[:], h) == 1 {
				found = t
			}
		}
	}
	if found == nil {
		return nil, ErrUnknownToken
	}
	return found, nil
}

// Get returns the tenant with this id.
func (s *Set) Get(id string) (*Tenant, bool) {
	t, ok := s.byID[id]
	return t, ok
}

// All returns every tenant in file order.
func (s *Set) All() []*Tenant { return append([]*Tenant(nil), s.tenants...) }
