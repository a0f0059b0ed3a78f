package admin

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"
)

// The status page: server-rendered HTML, no JavaScript.

type statusRec struct {
	Tenant        string    `json:"tenant"`
	Guild         string    `json:"guild"`
	User          string    `json:"user"`
	DiscordUserID string    `json:"discord_user_id"`
	State         string    `json:"state"`
	Code          int       `json:"code"`
	Detail        string    `json:"detail"`
	Action        string    `json:"action"`
	Roles         []string  `json:"roles"`
	TraceID       string    `json:"trace_id"`
	Time          time.Time `json:"time"`
	UserName      string    `json:"-"`
}

type deadLetter struct {
	statusRec
	Op         string `json:"op"`
	HTTPStatus int    `json:"http_status"`
}

type repairChange struct {
	User          string   `json:"user"`
	DiscordUserID string   `json:"discord_user_id"`
	Op            string   `json:"op"`
	Add           []string `json:"add"`
	Remove        []string `json:"remove"`
	Done          bool     `json:"done"`
	Error         string   `json:"error"`
}

type repairRec struct {
	DryRun   bool           `json:"dry_run"`
	Members  int            `json:"members"`
	Changes  []repairChange `json:"changes"`
	Started  time.Time      `json:"started"`
	Duration time.Duration  `json:"duration"`
	Error    string         `json:"error"`
}

type guildOverview struct {
	Guild  string         `json:"guild"`
	Counts map[string]int `json:"counts"`
	Brake  *struct {
		Engaged bool     `json:"engaged"`
		Recent  int      `json:"recent_removals"`
		Limit   int      `json:"limit"`
		Held    []string `json:"held_members"`
	} `json:"brake"`
	Repair *repairRec `json:"last_repair"`
}

type overview struct {
	Tenant             string          `json:"tenant"`
	Guilds             []guildOverview `json:"guilds"`
	Failures           []statusRec     `json:"failures"`
	PendingLinks       []statusRec     `json:"pending_links"`
	DeadLetters        []deadLetter    `json:"dead_letters"`
	InvalidRequests10m int             `json:"invalid_requests_10m"`
}

type memberStatus struct {
	Guild         string     `json:"guild"`
	Status        *statusRec `json:"status"`
	DiscordUserID string     `json:"discord_user_id"`
	InGuild       bool       `json:"in_guild"`
	Desired       []string   `json:"desired_roles"`
	Actual        []string   `json:"actual_roles"`
	ToAdd         []string   `json:"to_add"`
	ToRemove      []string   `json:"to_remove"`
	PlanError     string     `json:"plan_error"`
}

type searchView struct {
	Query  string
	Error  string
	User   *UserView
	Groups []GroupView
	Guilds []memberStatus
}

type pageView struct {
	Tenant   string
	Tenants  []string
	Now      time.Time
	Error    string
	States   []string
	Overview overview
	Search   *searchView
}

type loginView struct{ Failed bool }

// states are the sync states of DESIGN.md property 7, in page order.
var states = []string{"in_sync", "pending", "retrying", "failed", "pending_link", "pending_join"}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := pageView{Now: time.Now().UTC(), States: states}
	for _, t := range s.deps.Tenants.All() {
		v.Tenants = append(v.Tenants, t.ID)
	}
	sort.Strings(v.Tenants)
	q := r.URL.Query()
	if q.Get("tenant") == "" && len(v.Tenants) > 0 {
		q.Set("tenant", v.Tenants[0])
		r.URL.RawQuery = q.Encode()
	}
	t, err := s.tenant(r)
	if err != nil {
		v.Error = err.Error()
		s.render(w, http.StatusBadRequest, v)
		return
	}
	v.Tenant = t.ID
	if raw, err := s.askApplier(ctx, "overview", applierRequest{Tenant: t.ID}); err != nil {
		v.Error = "applier: " + err.Error()
	} else if err := json.Unmarshal(raw, &v.Overview); err != nil {
		v.Error = "applier: bad overview: " + err.Error()
	}
	var ids []string
	for _, f := range v.Overview.Failures {
		ids = append(ids, f.User)
	}
	for _, f := range v.Overview.PendingLinks {
		ids = append(ids, f.User)
	}
	for _, f := range v.Overview.DeadLetters {
		ids = append(ids, f.User)
	}
	names := s.userNames(ctx, t.ID, ids)
	for i := range v.Overview.Failures {
		v.Overview.Failures[i].UserName = names[v.Overview.Failures[i].User]
	}
	for i := range v.Overview.PendingLinks {
		v.Overview.PendingLinks[i].UserName = names[v.Overview.PendingLinks[i].User]
	}
	for i := range v.Overview.DeadLetters {
		v.Overview.DeadLetters[i].UserName = names[v.Overview.DeadLetters[i].User]
	}
	if uq := strings.TrimSpace(q.Get("user")); uq != "" {
		sv := &searchView{Query: uq}
		u, groups, err := s.lookup(ctx, t, uq)
		if err != nil {
			sv.Error = err.Error()
		} else {
			uv := u.view()
			sv.User, sv.Groups = &uv, groups
			if raw, err := s.askApplier(ctx, "status", applierRequest{Tenant: t.ID, User: u.ID}); err != nil {
				sv.Error = err.Error()
			} else if err := json.Unmarshal(raw, &sv.Guilds); err != nil {
				sv.Error = "applier: bad status: " + err.Error()
			}
		}
		v.Search = sv
	}
	s.render(w, http.StatusOK, v)
}

func (s *Server) render(w http.ResponseWriter, status int, v pageView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := pageTmpl.ExecuteTemplate(w, "page", v); err != nil {
		s.log.Warn("status page render failed", "error", err)
	}
}

var pageTmpl = template.Must(template.New("admin").Funcs(template.FuncMap{
	"count": func(m map[string]int, k string) int { return m[k] },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"join": func(s []string) string {
		if len(s) == 0 {
			return "—"
		}
		return strings.Join(s, ", ")
	},
	"short": func(s string) string {
		if len(s) > 13 {
			return s[:8] + "…"
		}
		return s
	},
}).Parse(pageHTML))

const pageHTML = `
{{define "style"}}<style>
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
header{display:flex;align-items:center;gap:16px;padding:12px 24px;border-bottom:1px solid var(--line);background:var(--bg)}
header h1{font-size:18px;margin:0}header .sub{color:var(--muted)}header form{margin-left:auto;display:flex;gap:8px}
main{padding:16px 24px;max-width:1400px}
h2{font-size:16px;margin:24px 0 8px}h3{font-size:14px;margin:16px 0 6px}
input[type=text],input[type=password],select{padding:6px 8px;border:1px solid var(--line);border-radius:6px;font:inherit;min-width:260px}
button{padding:6px 12px;border:1px solid var(--line);border-radius:6px;background:#fff;font:inherit;cursor:pointer}
table{border-collapse:collapse;width:100%;margin:4px 0 12px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:340px;flex:1}
.counts{display:grid;grid-template-columns:repeat(3,1fr);gap:8px;margin-top:8px}.count{background:var(--bg);border-radius:6px;padding:6px 8px}
.count b{display:block;font-size:20px}.count span{font-size:12px;color:var(--muted)}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;border:1px solid}
.in_sync{color:var(--ok);border-color:var(--ok)}.failed{color:var(--bad);border-color:var(--bad)}.retrying,.pending{color:var(--warn);border-color:var(--warn)}
.pending_link,.pending_join{color:var(--info);border-color:var(--info)}
.err{background:#ffebe9;border:1px solid var(--bad);border-radius:6px;padding:8px 12px;color:var(--bad)}
.muted{color:var(--muted)}.empty{color:var(--muted);font-style:italic}
td.id{white-space:nowrap}
.login{max-width:420px;margin:80px auto;border:1px solid var(--line);border-radius:8px;padding:24px}
</style>{{end}}

{{define "login"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><title>scimcord — sign in</title>{{template "style"}}</head>
<body><div class="login"><h1>scimcord status</h1>
{{if .Failed}}<p class="err">That is not the admin token.</p>{{end}}
<form method="post" action="/admin/login"><p>Admin token (<code>SCIMCORD_ADMIN_TOKEN</code>)</p>
<p><input type="password" name="token" autocomplete="current-password" autofocus></p><button type="submit">Sign in</button></form></div></body></html>{{end}}

{{define "status"}}<tr id="m-{{.User}}-{{.Guild}}"><td>{{if .UserName}}<b>{{.UserName}}</b><br>{{end}}<a class="mono" href="?tenant={{.Tenant}}&amp;user={{.User}}">{{.User}}</a></td>
<td class="mono">{{.DiscordUserID}}</td><td class="mono">{{.Guild}}</td><td><span class="pill {{.State}}">{{.State}}</span></td>
<td class="mono">{{if .Code}}{{.Code}}{{else}}—{{end}}</td><td>{{.Detail}}</td><td class="mono trace-id">{{.TraceID}}</td><td class="muted">{{ago .Time}}</td></tr>{{end}}

{{define "page"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><title>scimcord status — {{.Tenant}}</title>{{template "style"}}</head>
<body><header><h1>scimcord status</h1><span class="sub">tenant <b>{{.Tenant}}</b> · {{.Now.Format "2006-01-02 15:04:05"}} UTC</span>
<form method="get" action="/admin/">{{if gt (len .Tenants) 1}}<select name="tenant">{{range .Tenants}}<option{{if eq . $.Tenant}} selected{{end}}>{{.}}</option>{{end}}</select>{{else}}<input type="hidden" name="tenant" value="{{.Tenant}}">{{end}}
<input type="text" name="user" placeholder="userName, SCIM id or Discord id" value="{{if .Search}}{{.Search.Query}}{{end}}"><button type="submit">Search</button></form></header>
<main>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
{{with .Search}}<section id="search"><h2>Member {{.Query}}</h2>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
{{with .User}}<table><tr><th>userName</th><th>SCIM id</th><th>Discord id</th><th>active</th><th>last change</th><th>its trace id</th></tr>
<tr><td><b>{{.UserName}}</b>{{if .Deleted}} <span class="pill failed">deleted</span>{{end}}</td><td class="mono">{{.ID}}</td><td class="mono">{{.DiscordUserID}}</td><td>{{.Active}}</td><td>{{.LastOp}} v{{.Version}} · {{ago .LastChange}}</td><td class="mono trace-id">{{.LastTraceID}}</td></tr></table>{{end}}
{{if .User}}<p>Groups: {{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g.DisplayName}}{{if $g.MembershipTraceID}} <span class="mono muted">(added in trace {{$g.MembershipTraceID}})</span>{{end}}{{else}}<span class="empty">none</span>{{end}}</p>{{end}}
{{range .Guilds}}<h3>Guild <span class="mono">{{.Guild}}</span> {{with .Status}}<span class="pill {{.State}}">{{.State}}</span>{{end}}</h3>
<table><tr><th>desired roles</th><th>actual roles</th><th>to add</th><th>to remove</th><th>Discord code</th><th>last error / action</th><th>trace id</th></tr>
<tr><td class="mono">{{join .Desired}}</td><td class="mono">{{if .InGuild}}{{join .Actual}}{{else}}not in guild{{end}}</td><td class="mono">{{join .ToAdd}}</td><td class="mono">{{join .ToRemove}}</td>
<td class="mono">{{with .Status}}{{if .Code}}{{.Code}}{{else}}—{{end}}{{end}}</td><td>{{with .Status}}{{if .Detail}}{{.Detail}}{{else}}{{.Action}}{{end}}{{end}}{{if .PlanError}}<br><span class="err">{{.PlanError}}</span>{{end}}</td>
<td class="mono trace-id">{{with .Status}}{{.TraceID}}{{end}}</td></tr></table>{{end}}
</section>{{end}}

<h2>Guilds</h2><div class="cards">{{range .Overview.Guilds}}<div class="card"><b>Guild</b> <span class="mono">{{.Guild}}</span>
{{with .Brake}}{{if .Engaged}} <span class="pill failed">brake engaged: {{len .Held}} held</span>{{end}}{{end}}
<div class="counts">{{$c := .Counts}}{{range $.States}}<div class="count"><b>{{count $c .}}</b><span class="pill {{.}}">{{.}}</span></div>{{end}}</div>
<h3>Last drift report</h3>{{with .Repair}}<p>{{if .DryRun}}dry run · {{end}}{{.Members}} members · {{len .Changes}} changes · {{ago .Started}}{{if .Error}} · <span class="err">{{.Error}}</span>{{end}}</p>
{{if .Changes}}<table><tr><th>member</th><th>op</th><th>add</th><th>remove</th><th>done</th></tr>{{range .Changes}}<tr><td class="mono">{{.DiscordUserID}}</td><td>{{.Op}}</td><td class="mono">{{join .Add}}</td><td class="mono">{{join .Remove}}</td><td>{{if .Error}}<span class="err">{{.Error}}</span>{{else}}{{.Done}}{{end}}</td></tr>{{end}}</table>{{end}}
{{else}}<p class="empty">no drift repair since the applier started</p>{{end}}</div>{{end}}</div>
<p class="muted">Discord invalid requests (401/403/429) in the last 10 minutes: <b>{{.Overview.InvalidRequests10m}}</b> (Discord bans at 10,000).</p>

<h2 id="failures">Failures</h2>{{if .Overview.Failures}}<table><tr><th>user</th><th>Discord id</th><th>guild</th><th>status</th><th>code</th><th>detail</th><th>trace id</th><th>when</th></tr>
{{range .Overview.Failures}}{{template "status" .}}{{end}}</table>{{else}}<p class="empty">no failing member</p>{{end}}

<h2 id="dead-letters">Dead letters</h2>{{if .Overview.DeadLetters}}<table><tr><th>id</th><th>user</th><th>op</th><th>HTTP</th><th>code</th><th>detail</th><th>trace id</th><th>when</th></tr>
{{range .Overview.DeadLetters}}<tr><td class="mono id">{{.Guild}}/<br>{{.User}}</td><td>{{.UserName}}</td><td>{{.Op}}</td><td class="mono">{{.HTTPStatus}}</td><td class="mono">{{.Code}}</td><td>{{.Detail}}</td><td class="mono trace-id">{{.TraceID}}</td><td class="muted">{{ago .Time}}</td></tr>{{end}}</table>
<p class="muted">Replay after fixing the cause: <code>scimcord dlq replay &lt;id&gt;</code> or <code>--all</code>.</p>{{else}}<p class="empty">no dead letter</p>{{end}}

<h2 id="pending-links">Pending links and joins</h2>{{if .Overview.PendingLinks}}<table><tr><th>user</th><th>Discord id</th><th>guild</th><th>status</th><th>code</th><th>detail</th><th>trace id</th><th>when</th></tr>
{{range .Overview.PendingLinks}}{{template "status" .}}{{end}}</table>{{else}}<p class="empty">every member is linked and in the guild</p>{{end}}
<form method="post" action="/admin/logout"><button type="submit">Sign out</button></form>
</main></body></html>{{end}}
`
