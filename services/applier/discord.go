package applier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"
)

// Discord JSON error codes the applier decides on.
const (
	codeUnknownMember      = 10007
	codeUnknownRole        = 10011
	codeMissingAccess      = 50001
	codeMissingPermissions = 50013
)

// Route names of the calls the applier makes. They only key the limiter's
// learned state; bucket sizes come from the response headers.
const (
	routeMemberGet    = "GET /guilds/{g}/members/{u}"
	routeMemberEdit   = "PATCH /guilds/{g}/members/{u}"
	routeRoleAdd      = "PUT /guilds/{g}/members/{u}/roles/{r}"
	routeRoleRemove   = "DELETE /guilds/{g}/members/{u}/roles/{r}"
	routeMemberKick   = "DELETE /guilds/{g}/members/{u}"
	routeBanCreate    = "PUT /guilds/{g}/bans/{u}"
	routeMembersList  = "GET /guilds/{g}/members"
	routeRolesList    = "GET /guilds/{g}/roles"
	routeUsersMe      = "GET /users/@me"
	routeGuildGet     = "GET /guilds/{g}"
	routeRoleEdit     = "PATCH /guilds/{g}/roles/{r}"
	routeRoleDelete   = "DELETE /guilds/{g}/roles/{r}"
	routeGuildRoleNew = "POST /guilds/{g}/roles"
)

// ErrorClass says what the applier does about a failed Discord call.
type ErrorClass int

// The error classes.
const (
	// ClassTransient: 5xx, network errors, timeouts — retry with backoff.
	ClassTransient ErrorClass = iota
	// ClassRateLimited: a 429 or our own limiter's deferral — delay the message.
	ClassRateLimited
	// ClassUnknownMember: 10007 — the user is not in the guild (pending_join).
	ClassUnknownMember
	// ClassPermanent: 50013, 10011, 50001 and other 4xx — failed + dead letter.
	ClassPermanent
)

// DiscordError is a failed Discord call, classified.
type DiscordError struct {
	Op         string // what the applier tried, e.g. "add role 123"
	Status     int    // HTTP status, 0 for transport errors
	Code       int    // Discord JSON error code
	Message    string // Discord's message
	RetryAfter time.Duration
	Class      ErrorClass
	Err        error
}

func (e *DiscordError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("discord %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("discord %s: HTTP %d code %d: %s", e.Op, e.Status, e.Code, e.Message)
}

func (e *DiscordError) Unwrap() error { return e.Err }

// classify turns a discordgo error into a *DiscordError.
func classify(op string, err error) *DiscordError {
	de := &DiscordError{Op: op, Err: err, Class: ClassTransient}
	var we *WaitError
	var rl *discordgo.RateLimitError
	var re *discordgo.RESTError
	switch {
	case errors.As(err, &we):
		de.Class, de.RetryAfter = ClassRateLimited, we.Delay
	case errors.As(err, &rl):
		de.Class, de.Status, de.Message = ClassRateLimited, http.StatusTooManyRequests, rl.Message
		if rl.TooManyRequests != nil {
			de.RetryAfter = rl.RetryAfter
		}
		if de.RetryAfter <= 0 {
			de.RetryAfter = time.Second
		}
	case errors.As(err, &re):
		if re.Response != nil {
			de.Status = re.Response.StatusCode
		}
		if re.Message != nil {
			de.Code, de.Message = re.Message.Code, re.Message.Message
		}
		switch {
		case de.Code == codeUnknownMember:
			de.Class = ClassUnknownMember
		case de.Status == http.StatusTooManyRequests:
			// A 429 discordgo could not parse (such as a Cloudflare ban page).
			de.Class, de.RetryAfter = ClassRateLimited, time.Minute
		case de.Status >= 500 || de.Status == http.StatusRequestTimeout || de.Status == 0:
			de.Class = ClassTransient
		case de.Status == http.StatusUnauthorized:
			// A bad or rotated token: not the member's fault, retried slowly.
			de.Class = ClassTransient
		default:
			de.Class = ClassPermanent
		}
		if de.Message == "" {
			de.Message = http.StatusText(de.Status)
		}
	default:
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
			de.Class = ClassTransient
		}
		if strings.Contains(err.Error(), "Exceeded Max retries") {
			de.Class = ClassTransient
		}
	}
	return de
}

// discord wraps a discordgo session with the applier's limiter.
type discord struct {
	s       *discordgo.Session
	limiter *Limiter
	timeout time.Duration
	// prio holds background (low-priority) calls behind live work.
	prio *priority
}

func newDiscord(token string, hc *http.Client, limiter *Limiter, m *metrics, timeout time.Duration) (*discord, error) {
	if !strings.HasPrefix(token, "Bot ") {
		token = "Bot " + token
	}
	s, err := discordgo.New(token)
	if err != nil {
		return nil, errors.New("applier: cannot create discord session") // never echo the token
	}
	base := http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		base = hc.Transport
	}
	client := &http.Client{Transport: &limitTransport{base: base, limiter: limiter, metrics: m}, Timeout: timeout}
	if hc != nil && hc.Timeout > 0 {
		client.Timeout = hc.Timeout
	}
	s.Client = client
	s.ShouldRetryOnRateLimit = false
	s.MaxRestRetries = 0
	s.StateEnabled = false
	s.Identify.Intents = discordgo.IntentsGuildMembers
	return &discord{s: s, limiter: limiter, timeout: timeout, prio: newPriority()}, nil
}

// opts builds the request options of one call.
func (d *discord) opts(ctx context.Context, t *Ticket, reason string) []discordgo.RequestOption {
	o := []discordgo.RequestOption{discordgo.WithContext(withTicket(ctx, t)), discordgo.WithRetryOnRatelimit(false), discordgo.WithRestRetries(0)}
	if reason != "" {
		// discordgo v0.28.1 sends the reason as given; Discord wants it URL-encoded.
		o = append(o, discordgo.WithAuditLogReason(encodeReason(reason)))
	}
	return o
}

func (d *discord) call(ctx context.Context, route Route, op string, f func(t *Ticket) error) error {
	start := time.Now()
	var t *Ticket
	for {
		// Background work waits while live work of the guild is in flight,
		// and gives back a ticket it got meanwhile.
		if err := d.prio.wait(ctx, route.Major); err != nil {
			return classify(op, err)
		}
		var err error
		t, err = d.limiter.Acquire(ctx, route)
		if err != nil {
			return classify(op, err)
		}
		if !d.prio.yield(ctx, route.Major) {
			break
		}
		t.Cancel()
	}
	t.waited = time.Since(start)
	if by, ok := ctx.Value(freshKey{}).(time.Time); ok && time.Now().After(by) {
		// The plan is older than allowed after the wait: plan again.
		t.Cancel()
		return classify(op, errStaleRoles)
	}
	if err := f(t); err != nil {
		t.Cancel() // no-op when the transport observed the response
		return classify(op, err)
	}
	t.Cancel()
	return nil
}

// request sends one request with discordgo's encoding, headers and error
// decoding, but with a bucket of its own: discordgo's RateLimiter locks a
// per-route bucket (guild + route) for the whole HTTP request, so one slow
// call would hold every other call of that kind in the guild, ignoring ctx.
// The applier's limiter (the ticket, taken just before) already decided
// that the request may go, and the transport strips the rate-limit headers,
// so this bucket never makes discordgo wait.
func (d *discord) request(ctx context.Context, t *Ticket, method, uri string, data any, reason string) ([]byte, error) {
	var body []byte
	if data != nil {
		var err error
		if body, err = discordgo.Marshal(data); err != nil {
			return nil, fmt.Errorf("applier: encode %s request: %w", method, err)
		}
	}
	b := &discordgo.Bucket{Key: method + " " + uri}
	b.Lock() // released by discordgo when the answer is in
	return d.s.RequestWithLockedBucket(method, uri, "application/json", body, b, 0, d.opts(ctx, t, reason)...)
}

// requestJSON is request that decodes the answer into out.
func (d *discord) requestJSON(ctx context.Context, t *Ticket, method, uri string, data any, reason string, out any) error {
	body, err := d.request(ctx, t, method, uri, data, reason)
	if err != nil {
		return err
	}
	if err := discordgo.Unmarshal(body, out); err != nil {
		return fmt.Errorf("applier: decode %s %s answer: %w", method, routeTemplate(strings.SplitN(uri, "?", 2)[0]), err)
	}
	return nil
}

// Member returns a member's role ids.
func (d *discord) Member(ctx context.Context, guildID, userID string) ([]string, error) {
	var roles []string
	err := d.call(ctx, Route{routeMemberGet, guildID}, "get member", func(t *Ticket) error {
		var m discordgo.Member
		err := d.requestJSON(ctx, t, http.MethodGet, discordgo.EndpointGuildMember(guildID, userID), nil, "", &m)
		if err == nil {
			roles = m.Roles
		}
		return err
	})
	return roles, err
}

// AddRole adds one role to a member.
func (d *discord) AddRole(ctx context.Context, guildID, userID, roleID, reason string) error {
	return d.call(ctx, Route{routeRoleAdd, guildID}, "add role "+roleID, func(t *Ticket) error {
		_, err := d.request(ctx, t, http.MethodPut, discordgo.EndpointGuildMemberRole(guildID, userID, roleID), nil, reason)
		return err
	})
}

// RemoveRole removes one role from a member.
func (d *discord) RemoveRole(ctx context.Context, guildID, userID, roleID, reason string) error {
	return d.call(ctx, Route{routeRoleRemove, guildID}, "remove role "+roleID, func(t *Ticket) error {
		_, err := d.request(ctx, t, http.MethodDelete, discordgo.EndpointGuildMemberRole(guildID, userID, roleID), nil, reason)
		return err
	})
}

type freshKey struct{}

// withFreshBy marks ctx: a call made with it is not sent after by (the
// desired state it was planned from would be too old).
func withFreshBy(ctx context.Context, by time.Time) context.Context {
	return context.WithValue(ctx, freshKey{}, by)
}

// errStaleRoles means a PATCH was not sent because the roles it was computed
// from were read longer than the allowed age ago (plan again from a new GET).
var errStaleRoles = errors.New("applier: member roles read too long ago for a PATCH")

// SetRoles replaces a member's whole role list in one PATCH. The list was
// computed from roles read at readAt: once the limiter lets the request go,
// it is sent only if that read is younger than maxAge (else errStaleRoles,
// nothing sent).
func (d *discord) SetRoles(ctx context.Context, guildID, userID string, roles []string, reason string, readAt time.Time, maxAge time.Duration) error {
	return d.call(ctx, Route{routeMemberEdit, guildID}, "set roles", func(t *Ticket) error {
		if readAt.IsZero() || time.Since(readAt) > maxAge {
			return errStaleRoles
		}
		_, err := d.request(ctx, t, http.MethodPatch, discordgo.EndpointGuildMember(guildID, userID), &discordgo.GuildMemberParams{Roles: &roles}, reason)
		return err
	})
}

// Kick removes a member from the guild.
func (d *discord) Kick(ctx context.Context, guildID, userID, reason string) error {
	return d.call(ctx, Route{routeMemberKick, guildID}, "kick", func(t *Ticket) error {
		_, err := d.request(ctx, t, http.MethodDelete, discordgo.EndpointGuildMember(guildID, userID), nil, reason)
		return err
	})
}

// Ban bans a user from the guild.
func (d *discord) Ban(ctx context.Context, guildID, userID, reason string) error {
	return d.call(ctx, Route{routeBanCreate, guildID}, "ban", func(t *Ticket) error {
		_, err := d.request(ctx, t, http.MethodPut, discordgo.EndpointGuildBan(guildID, userID), nil, reason)
		return err
	})
}

// Members lists one page of members after the given user id.
func (d *discord) Members(ctx context.Context, guildID, after string, limit int) ([]*discordgo.Member, error) {
	var out []*discordgo.Member
	err := d.call(ctx, Route{routeMembersList, guildID}, "list members", func(t *Ticket) error {
		v := url.Values{}
		if after != "" {
			v.Set("after", after)
		}
		if limit > 0 {
			v.Set("limit", strconv.Itoa(limit))
		}
		uri := discordgo.EndpointGuildMembers(guildID)
		if len(v) > 0 {
			uri += "?" + v.Encode()
		}
		return d.requestJSON(ctx, t, http.MethodGet, uri, nil, "", &out)
	})
	return out, err
}

// Roles lists the guild's roles.
func (d *discord) Roles(ctx context.Context, guildID string) ([]*discordgo.Role, error) {
	var out []*discordgo.Role
	err := d.call(ctx, Route{routeRolesList, guildID}, "list roles", func(t *Ticket) error {
		return d.requestJSON(ctx, t, http.MethodGet, discordgo.EndpointGuildRoles(guildID), nil, "", &out)
	})
	return out, err
}

// CreateRole creates a role; reason is the audit-log reason.
func (d *discord) CreateRole(ctx context.Context, t *Ticket, guildID string, p *discordgo.RoleParams, reason string) (*discordgo.Role, error) {
	var r discordgo.Role
	if err := d.requestJSON(ctx, t, http.MethodPost, discordgo.EndpointGuildRoles(guildID), p, reason, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// EditRole edits a role.
func (d *discord) EditRole(ctx context.Context, t *Ticket, guildID, roleID string, p *discordgo.RoleParams, reason string) error {
	_, err := d.request(ctx, t, http.MethodPatch, discordgo.EndpointGuildRole(guildID, roleID), p, reason)
	return err
}

// DeleteRole deletes a role.
func (d *discord) DeleteRole(ctx context.Context, t *Ticket, guildID, roleID, reason string) error {
	_, err := d.request(ctx, t, http.MethodDelete, discordgo.EndpointGuildRole(guildID, roleID), nil, reason)
	return err
}

// GuildOwner returns the id of the guild's owner.
func (d *discord) GuildOwner(ctx context.Context, guildID string) (string, error) {
	var owner string
	err := d.call(ctx, Route{routeGuildGet, guildID}, "get guild", func(t *Ticket) error {
		var g discordgo.Guild
		err := d.requestJSON(ctx, t, http.MethodGet, discordgo.EndpointGuild(guildID), nil, "", &g)
		if err == nil {
			owner = g.OwnerID
		}
		return err
	})
	return owner, err
}

// Me returns the bot's own user id.
func (d *discord) Me(ctx context.Context) (string, error) {
	var id string
	err := d.call(ctx, Route{routeUsersMe, ""}, "get bot user", func(t *Ticket) error {
		var u discordgo.User
		err := d.requestJSON(ctx, t, http.MethodGet, discordgo.EndpointUser("@me"), nil, "", &u)
		if err == nil {
			id = u.ID
		}
		return err
	})
	return id, err
}

// maxReasonBytes keeps reasons under Discord's 512-character limit.
const maxReasonBytes = 400

// encodeReason percent-encodes an audit-log reason: every byte outside the
// unreserved set (RFC 3986) is escaped, so spaces, '+' and UTF-8 survive.
func encodeReason(s string) string {
	if len(s) > maxReasonBytes {
		s = s[:maxReasonBytes]
		for i := 0; i < 3 && len(s) > 0; i++ { // do not cut a character in half
			if r, n := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || n > 1 {
				break
			}
			s = s[:len(s)-1]
		}
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
