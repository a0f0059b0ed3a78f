package discordemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Admin is a typed Go client of the /_emu admin API (§11).
type Admin struct {
	base  string
	token string
	hc    *http.Client
}

// NewAdmin returns an admin client for an emulator at baseURL (e.g.
// http://127.0.0.1:8090). token is the optional admin token.
func NewAdmin(baseURL, token string, hc *http.Client) *Admin {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Admin{base: baseURL, token: token, hc: hc}
}

// AdminError is a non-2xx admin API answer.
type AdminError struct {
	Status  int
	Message string
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("discordemu admin: %d %s", e.Status, e.Message)
}

func (a *Admin) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(v), "application/yaml"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("discordemu admin: encode %s: %w", path, err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+"/_emu"+path, body)
	if err != nil {
		return fmt.Errorf("discordemu admin: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if a.token != "" {
		req.Header.Set("X-Emu-Admin-Token", a.token)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("discordemu admin %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("discordemu admin %s %s: read: %w", method, path, err)
	}
	if res.StatusCode >= 300 && res.StatusCode != http.StatusRequestTimeout {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = string(data)
		}
		return &AdminError{Status: res.StatusCode, Message: e.Error}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("discordemu admin %s %s: decode: %w", method, path, err)
		}
	}
	if res.StatusCode == http.StatusRequestTimeout {
		return &AdminError{Status: res.StatusCode, Message: "timeout"}
	}
	return nil
}

// Reset clears all state, limiter state, faults and recordings.
func (a *Admin) Reset(ctx context.Context) error { return a.do(ctx, "POST", "/reset", nil, nil) }

// LoadFixture seeds the emulator from a YAML fixture document.
func (a *Admin) LoadFixture(ctx context.Context, yamlDoc []byte) error {
	if yamlDoc == nil {
		yamlDoc = []byte{}
	}
	return a.do(ctx, "POST", "/fixture", yamlDoc, nil)
}

// LoadFixtureFile seeds the emulator from a YAML fixture file.
func (a *Admin) LoadFixtureFile(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("discordemu admin: read fixture: %w", err)
	}
	return a.LoadFixture(ctx, data)
}

// Config returns the current configuration.
func (a *Admin) Config(ctx context.Context) (Config, error) {
	var c Config
	err := a.do(ctx, "GET", "/config", nil, &c)
	return c, err
}

// SetConfig merges patch (a map, a struct or raw JSON bytes as json.RawMessage)
// into the configuration: only the fields present change.
func (a *Admin) SetConfig(ctx context.Context, patch any) error {
	if b, ok := patch.([]byte); ok {
		patch = json.RawMessage(b)
	}
	return a.do(ctx, "PUT", "/config", patch, nil)
}

// CreateApplication seeds an application and its bot user.
func (a *Admin) CreateApplication(ctx context.Context, s ApplicationSeed) (ApplicationInfo, error) {
	var out ApplicationInfo
	err := a.do(ctx, "POST", "/applications", s, &out)
	return out, err
}

// PatchApplication toggles members_intent or rotates tokens.
func (a *Admin) PatchApplication(ctx context.Context, id string, p ApplicationPatch) (ApplicationInfo, error) {
	var out ApplicationInfo
	err := a.do(ctx, "PATCH", "/applications/"+id, p, &out)
	return out, err
}

// CreateUser seeds a user.
func (a *Admin) CreateUser(ctx context.Context, s UserSeed) (User, error) {
	var out User
	err := a.do(ctx, "POST", "/users", s, &out)
	return out, err
}

// CreateGuild seeds a guild.
func (a *Admin) CreateGuild(ctx context.Context, s GuildSeed) (GuildSeedResult, error) {
	var out GuildSeedResult
	err := a.do(ctx, "POST", "/guilds", s, &out)
	return out, err
}

// State returns the full state of a guild.
func (a *Admin) State(ctx context.Context, guildID string) (*GuildState, error) {
	var out GuildState
	if err := a.do(ctx, "GET", "/guilds/"+guildID+"/state", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddMember joins a user directly (no checks). Roles may be ids.
func (a *Admin) AddMember(ctx context.Context, guildID string, m MemberSeed) (Member, error) {
	var out Member
	err := a.do(ctx, "POST", "/guilds/"+guildID+"/members", m, &out)
	return out, err
}

// EditMember edits a member directly (no checks); Roles replaces all roles.
func (a *Admin) EditMember(ctx context.Context, guildID, userID string, p MemberPatch) (Member, error) {
	var out Member
	err := a.do(ctx, "PATCH", "/guilds/"+guildID+"/members/"+userID, p, &out)
	return out, err
}

// SetMemberRoles replaces a member's roles directly (simulates a human admin).
func (a *Admin) SetMemberRoles(ctx context.Context, guildID, userID string, roles []string) error {
	if roles == nil {
		roles = []string{}
	}
	_, err := a.EditMember(ctx, guildID, userID, MemberPatch{Roles: &roles})
	return err
}

// RemoveMember removes a member directly.
func (a *Admin) RemoveMember(ctx context.Context, guildID, userID string) error {
	return a.do(ctx, "DELETE", "/guilds/"+guildID+"/members/"+userID, nil, nil)
}

// CreateRole creates a role directly; Position (1-based, optional) places it, default top.
func (a *Admin) CreateRole(ctx context.Context, guildID string, r RoleSeed) (Role, error) {
	var out Role
	err := a.do(ctx, "POST", "/guilds/"+guildID+"/roles", r, &out)
	return out, err
}

// EditRole edits a role directly, including position and managed.
func (a *Admin) EditRole(ctx context.Context, guildID, roleID string, p RolePatch) (Role, error) {
	var out Role
	err := a.do(ctx, "PATCH", "/guilds/"+guildID+"/roles/"+roleID, p, &out)
	return out, err
}

// DeleteRole deletes a role directly.
func (a *Admin) DeleteRole(ctx context.Context, guildID, roleID string) error {
	return a.do(ctx, "DELETE", "/guilds/"+guildID+"/roles/"+roleID, nil, nil)
}

// Ban bans a user directly.
func (a *Admin) Ban(ctx context.Context, guildID, userID string, reason *string) error {
	return a.do(ctx, "PUT", "/guilds/"+guildID+"/bans/"+userID, BanSeed{UserID: userID, Reason: reason}, nil)
}

// Unban removes a ban directly.
func (a *Admin) Unban(ctx context.Context, guildID, userID string) error {
	return a.do(ctx, "DELETE", "/guilds/"+guildID+"/bans/"+userID, nil, nil)
}

// Authorize issues an OAuth2 code without a browser.
func (a *Admin) Authorize(ctx context.Context, r AuthorizeRequest) (AuthorizeResult, error) {
	var out AuthorizeResult
	err := a.do(ctx, "POST", "/oauth2/authorize", r, &out)
	return out, err
}

// IssueToken issues an access/refresh token pair, skipping the code step.
func (a *Admin) IssueToken(ctx context.Context, r TokenRequest) (TokenResult, error) {
	var out TokenResult
	err := a.do(ctx, "POST", "/oauth2/tokens", r, &out)
	return out, err
}

// ExpireToken expires an access token.
func (a *Admin) ExpireToken(ctx context.Context, token string) error {
	return a.do(ctx, "POST", "/oauth2/tokens/"+url.PathEscape(token)+"/expire", nil, nil)
}

// RevokeToken revokes an access token.
func (a *Admin) RevokeToken(ctx context.Context, token string) error {
	return a.do(ctx, "POST", "/oauth2/tokens/"+url.PathEscape(token)+"/revoke", nil, nil)
}

// AddFault adds a fault rule and returns its id.
func (a *Admin) AddFault(ctx context.Context, r FaultRule) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := a.do(ctx, "POST", "/faults", r, &out)
	return out.ID, err
}

// Faults lists the fault rules with their counters.
func (a *Admin) Faults(ctx context.Context) ([]FaultRule, error) {
	var out struct {
		Faults []FaultRule `json:"faults"`
	}
	err := a.do(ctx, "GET", "/faults", nil, &out)
	return out.Faults, err
}

// DeleteFault removes one fault rule; id "" removes all.
func (a *Admin) DeleteFault(ctx context.Context, id string) error {
	p := "/faults"
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	return a.do(ctx, "DELETE", p, nil, nil)
}

// RateLimitTable returns the rate-limit table.
func (a *Admin) RateLimitTable(ctx context.Context) (RateLimitTable, error) {
	var out RateLimitTable
	err := a.do(ctx, "GET", "/ratelimits/table", nil, &out)
	return out, err
}

// SetRateLimitTable replaces the rate-limit table.
func (a *Admin) SetRateLimitTable(ctx context.Context, t RateLimitTable) error {
	return a.do(ctx, "PUT", "/ratelimits/table", t, nil)
}

// ResetRateLimits clears the limiter state (buckets and global windows).
func (a *Admin) ResetRateLimits(ctx context.Context) error {
	return a.do(ctx, "POST", "/ratelimits/reset", nil, nil)
}

// CloudflareBan bans an IP (default 127.0.0.1) now.
func (a *Admin) CloudflareBan(ctx context.Context, r CloudflareBanRequest) error {
	return a.do(ctx, "POST", "/cloudflare/ban", r, nil)
}

// CloudflareUnban lifts the ban of ip ("" = all).
func (a *Admin) CloudflareUnban(ctx context.Context, ip string) error {
	p := "/cloudflare/ban"
	if ip != "" {
		p += "?ip=" + url.QueryEscape(ip)
	}
	return a.do(ctx, "DELETE", p, nil, nil)
}

// Requests lists recorded requests.
func (a *Admin) Requests(ctx context.Context, f RequestFilter) ([]Record, error) {
	var out requestsPage
	err := a.do(ctx, "GET", "/requests?"+f.query(), nil, &out)
	return out.Requests, err
}

// ClearRequests removes all recorded requests.
func (a *Admin) ClearRequests(ctx context.Context) error {
	return a.do(ctx, "DELETE", "/requests", nil, nil)
}

// WaitRequests long-polls until count records match f, or timeout.
func (a *Admin) WaitRequests(ctx context.Context, f RequestFilter, count int, timeout time.Duration) ([]Record, error) {
	var out requestsPage
	q := f.query()
	if q != "" {
		q += "&"
	}
	q += "count=" + strconv.Itoa(count) + "&timeout_ms=" + strconv.FormatInt(timeout.Milliseconds(), 10)
	err := a.do(ctx, "GET", "/requests/wait?"+q, nil, &out)
	return out.Requests, err
}

// Metrics returns the recorder metrics.
func (a *Admin) Metrics(ctx context.Context) (Metrics, error) {
	var out Metrics
	err := a.do(ctx, "GET", "/metrics", nil, &out)
	return out, err
}

// Snapshot saves the full state and returns its id.
func (a *Admin) Snapshot(ctx context.Context) (string, error) {
	var out struct {
		ID string `json:"snapshot_id"`
	}
	err := a.do(ctx, "POST", "/snapshot", nil, &out)
	return out.ID, err
}

// Restore restores a snapshot.
func (a *Admin) Restore(ctx context.Context, id string) error {
	return a.do(ctx, "POST", "/restore/"+url.PathEscape(id), nil, nil)
}

// AuditLog returns audit entries, optionally filtered (guildID "" / actionType 0 = all).
func (a *Admin) AuditLog(ctx context.Context, guildID string, actionType int) ([]AuditEntry, error) {
	var out struct {
		AuditLog []AuditEntry `json:"audit_log"`
	}
	q := url.Values{}
	if guildID != "" {
		q.Set("guild_id", guildID)
	}
	if actionType != 0 {
		q.Set("action_type", strconv.Itoa(actionType))
	}
	err := a.do(ctx, "GET", "/audit-log?"+q.Encode(), nil, &out)
	return out.AuditLog, err
}
