// Package cli is the operator side of the scimcord binary: subcommands that
// talk to a running instance's admin API (/admin/api/v1/ on ingest) and
// print tables, or the API's JSON with -o json (fields in
// README.md, "The operator CLI").
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Env is what the CLI takes from the process (read by main only).
type Env struct {
	// Token is SCIMCORD_ADMIN_TOKEN.
	Token string
	// Server is the default of --server ("" = http://127.0.0.1:8080); main
	// sets it from SCIMCORD_SERVER or SCIMCORD_HTTP_ADDR (DefaultServer).
	Server string
	// Out receives the result; Err the usage.
	Out, Err io.Writer
	// HTTPClient talks to the server (default: 2-minute timeout).
	HTTPClient *http.Client
	// ReadFile reads the rules file (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
}

// ErrUsage is a bad invocation; the usage has been printed.
var ErrUsage = errors.New("usage")

// Usage is the help text of the operator subcommands.
const Usage = `usage: scimcord [run]                               run the whole system
       scimcord status <userName | SCIM id | Discord id>
       scimcord explain <user>
       scimcord dlq list
       scimcord dlq replay <id | --all>
       scimcord reconcile <guild> [--dry-run]
       scimcord rules apply -f rules.yaml [--guild ID] [--dry-run]
flags: --server URL  --tenant ID  -o table|json
--server defaults to $SCIMCORD_SERVER, else to http://$SCIMCORD_HTTP_ADDR (the address
make run listens on), else to http://127.0.0.1:8080
the admin token comes from SCIMCORD_ADMIN_TOKEN
`

// DefaultServer is the server URL the CLI talks to when --server is not
// given: server (SCIMCORD_SERVER) when set, else the admin API of a local
// instance listening on httpAddr (SCIMCORD_HTTP_ADDR: ":8080" and
// "0.0.0.0:8080" are reached on loopback), else http://127.0.0.1:8080.
func DefaultServer(server, httpAddr string) string {
	if server != "" {
		return server
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if httpAddr == "" || err != nil || port == "" {
		return "http://127.0.0.1:8080"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

type options struct {
	server, tenant, output, file, guild string
	dryRun, all                         bool
}

// Commands lists the operator subcommands (anything else is not the CLI).
var Commands = []string{"status", "explain", "dlq", "reconcile", "rules"}

// Run runs one operator subcommand (args without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	if env.Out == nil {
		env.Out = io.Discard
	}
	if env.Err == nil {
		env.Err = io.Discard
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	if env.ReadFile == nil {
		env.ReadFile = os.ReadFile
	}
	var o options
	fs := flag.NewFlagSet("scimcord", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if env.Server == "" {
		env.Server = DefaultServer("", "")
	}
	fs.StringVar(&o.server, "server", env.Server, "")
	fs.StringVar(&o.tenant, "tenant", "", "")
	fs.StringVar(&o.output, "o", "table", "")
	fs.StringVar(&o.output, "output", "table", "")
	fs.StringVar(&o.file, "f", "", "")
	fs.StringVar(&o.guild, "guild", "", "")
	fs.BoolVar(&o.dryRun, "dry-run", false, "")
	fs.BoolVar(&o.all, "all", false, "")
	// Flags may come before, between or after the words.
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return usage(env, err.Error())
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if o.output != "table" && o.output != "json" {
		return usage(env, "-o must be table or json")
	}
	if len(words) == 0 {
		return usage(env, "no command")
	}
	if msg := checkArgs(words, o); msg != "" {
		return usage(env, msg)
	}
	if env.Token == "" {
		return errors.New("SCIMCORD_ADMIN_TOKEN is not set (the admin token printed at start, or configured on the server)")
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usage(env, fmt.Sprintf("--server %q: want http(s)://host:port", o.server))
	}
	c := &client{base: strings.TrimRight(o.server, "/"), token: env.Token, hc: env.HTTPClient, tenant: o.tenant}
	w := env.Out
	switch {
	case words[0] == "status" && len(words) == 2:
		raw, err := c.get(ctx, "status", url.Values{"user": {words[1]}})
		return show(w, o, raw, err, printStatus)
	case words[0] == "explain" && len(words) == 2:
		raw, err := c.get(ctx, "explain", url.Values{"user": {words[1]}})
		return show(w, o, raw, err, printExplain)
	case words[0] == "dlq" && len(words) == 2 && words[1] == "list":
		raw, err := c.get(ctx, "dlq", nil)
		return show(w, o, raw, err, printDLQ)
	case words[0] == "dlq" && len(words) >= 2 && words[1] == "replay":
		body := map[string]any{"all": o.all}
		switch {
		case o.all && len(words) == 2:
		case !o.all && len(words) == 3:
			body["id"] = words[2]
		default:
			return usage(env, "dlq replay takes one id or --all")
		}
		raw, err := c.post(ctx, "dlq/replay", body)
		return show(w, o, raw, err, printReplay)
	case words[0] == "reconcile" && len(words) == 2:
		raw, err := c.post(ctx, "reconcile", map[string]any{"guild": words[1], "dry_run": o.dryRun})
		return show(w, o, raw, err, printRepair)
	case words[0] == "rules" && len(words) == 2 && words[1] == "apply":
		if o.file == "" {
			return usage(env, "rules apply needs -f rules.yaml")
		}
		doc, err := env.ReadFile(o.file)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.file, err)
		}
		raw, err := c.post(ctx, "rules/apply", map[string]any{"yaml": string(doc), "guild": o.guild, "dry_run": o.dryRun})
		return show(w, o, raw, err, printRules)
	}
	return usage(env, "unknown command: "+strings.Join(words, " "))
}

// subUsage is the usage line of each subcommand.
var subUsage = map[string]string{
	"status":    "scimcord status <userName | SCIM id | Discord id>",
	"explain":   "scimcord explain <user>",
	"dlq":       "scimcord dlq list | scimcord dlq replay <id | --all>",
	"reconcile": "scimcord reconcile <guild> [--dry-run]",
	"rules":     "scimcord rules apply -f rules.yaml [--guild ID] [--dry-run]",
}

// checkArgs reports a known subcommand called with the wrong words, with
// that subcommand's usage line ("" when the words fit, or the command is
// unknown).
func checkArgs(words []string, o options) string {
	line, ok := subUsage[words[0]]
	if !ok {
		return ""
	}
	fits := false
	switch words[0] {
	case "status", "explain", "reconcile":
		fits = len(words) == 2
	case "dlq":
		fits = (len(words) == 2 && words[1] == "list") ||
			(len(words) >= 2 && words[1] == "replay" && ((o.all && len(words) == 2) || (!o.all && len(words) == 3)))
	case "rules":
		fits = len(words) == 2 && words[1] == "apply" && o.file != ""
	}
	if fits {
		return ""
	}
	what := map[string]string{
		"status": "status needs one user", "explain": "explain needs one user", "reconcile": "reconcile needs one guild",
		"dlq": "dlq takes list, or replay with one id or --all", "rules": "rules apply needs -f rules.yaml",
	}[words[0]]
	return what + "; usage: " + line
}

func usage(env Env, msg string) error {
	fmt.Fprint(env.Err, Usage)
	return fmt.Errorf("%w: %s", ErrUsage, msg)
}

// client calls the admin API.
type client struct {
	base, token, tenant string
	hc                  *http.Client
}

func (c *client) get(ctx context.Context, path string, q url.Values) (json.RawMessage, error) {
	return c.do(ctx, http.MethodGet, path, q, nil)
}

func (c *client) post(ctx context.Context, path string, body any) (json.RawMessage, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodPost, path, nil, data)
}

func (c *client) do(ctx context.Context, method, path string, q url.Values, body []byte) (json.RawMessage, error) {
	if q == nil {
		q = url.Values{}
	}
	if c.tenant != "" {
		q.Set("tenant", c.tenant)
	}
	u := c.base + "/admin/api/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.base+"/admin/api/v1/"+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("server: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("server: HTTP %d", resp.StatusCode)
	}
	return raw, nil
}

// show prints raw as JSON (-o json) or through the table printer.
func show(w io.Writer, o options, raw json.RawMessage, err error, table func(io.Writer, json.RawMessage) error) error {
	if err != nil {
		return err
	}
	if o.output == "json" {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") != nil {
			buf.Reset()
			buf.Write(raw)
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	return table(w, raw)
}

func tw(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

type statusRec struct {
	Guild         string    `json:"guild"`
	User          string    `json:"user"`
	DiscordUserID string    `json:"discord_user_id"`
	State         string    `json:"state"`
	Code          int       `json:"code"`
	Detail        string    `json:"detail"`
	Action        string    `json:"action"`
	TraceID       string    `json:"trace_id"`
	Time          time.Time `json:"time"`
	Op            string    `json:"op"`
	HTTPStatus    int       `json:"http_status"`
}

func code(c int) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprint(c)
}

func printStatus(w io.Writer, raw json.RawMessage) error {
	var r struct {
		Tenant string `json:"tenant"`
		User   struct {
			ID            string    `json:"id"`
			UserName      string    `json:"userName"`
			Active        bool      `json:"active"`
			Deleted       bool      `json:"deleted"`
			DiscordUserID string    `json:"discordUserId"`
			Version       uint64    `json:"version"`
			LastOp        string    `json:"lastOp"`
			LastChange    time.Time `json:"lastChange"`
			LastTraceID   string    `json:"lastTraceId"`
		} `json:"user"`
		Groups []struct {
			DisplayName       string `json:"displayName"`
			MembershipTraceID string `json:"membershipTraceId"`
		} `json:"groups"`
		Guilds []struct {
			Guild     string     `json:"guild"`
			Status    *statusRec `json:"status"`
			InGuild   bool       `json:"in_guild"`
			Desired   []string   `json:"desired_roles"`
			Actual    []string   `json:"actual_roles"`
			ToAdd     []string   `json:"to_add"`
			ToRemove  []string   `json:"to_remove"`
			PlanError string     `json:"plan_error"`
		} `json:"guilds"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	t := tw(w)
	u := r.User
	state := "active"
	switch {
	case u.Deleted:
		state = "deleted"
	case !u.Active:
		state = "inactive"
	}
	fmt.Fprintf(t, "USER\t%s\t(SCIM id %s, Discord id %s)\n", u.UserName, u.ID, dash(u.DiscordUserID))
	fmt.Fprintf(t, "SCIM\t%s\tlast %s v%d at %s, trace %s\n", state, u.LastOp, u.Version, u.LastChange.UTC().Format(time.RFC3339), dash(u.LastTraceID))
	if len(r.Groups) == 0 {
		fmt.Fprintf(t, "GROUPS\t-\n")
	}
	for i, g := range r.Groups {
		label := ""
		if i == 0 {
			label = "GROUPS"
		}
		fmt.Fprintf(t, "%s\t%s\tadded by trace %s\n", label, g.DisplayName, dash(g.MembershipTraceID))
	}
	_ = t.Flush()
	fmt.Fprintln(w)
	t = tw(w)
	fmt.Fprintln(t, "GUILD\tSTATUS\tCODE\tDESIRED\tACTUAL\tTRACE ID\tLAST ERROR / ACTION")
	for _, g := range r.Guilds {
		st := statusRec{State: "-"}
		if g.Status != nil {
			st = *g.Status
		}
		actual := list(g.Actual)
		if !g.InGuild {
			actual = "(not in guild)"
		}
		detail := st.Detail
		if detail == "" {
			detail = st.Action
		}
		if g.PlanError != "" {
			detail += " [now: " + g.PlanError + "]"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Guild, st.State, code(st.Code), list(g.Desired), actual, dash(st.TraceID), dash(detail))
	}
	return t.Flush()
}

func printExplain(w io.Writer, raw json.RawMessage) error {
	var r struct {
		User struct {
			UserName string `json:"userName"`
		} `json:"user"`
		Guilds []struct {
			Guild   string `json:"guild"`
			Explain struct {
				RulesVersion json.Number `json:"rules_version"`
				Roles        []struct {
					Role struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"role"`
					Granted bool `json:"granted"`
					Rules   []struct {
						Rule    string `json:"rule"`
						Matched bool   `json:"matched"`
						Reason  string `json:"reason"`
					} `json:"rules"`
					NameProblem string `json:"name_problem"`
				} `json:"roles"`
			} `json:"explain"`
		} `json:"guilds"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode explain: %w", err)
	}
	for _, g := range r.Guilds {
		fmt.Fprintf(w, "%s in guild %s (rules version %s)\n", r.User.UserName, g.Guild, g.Explain.RulesVersion)
		t := tw(w)
		fmt.Fprintln(t, "ROLE\tID\tGRANTED\tRULE\tMATCHED\tWHY")
		for _, role := range g.Explain.Roles {
			if len(role.Rules) == 0 {
				fmt.Fprintf(t, "%s\t%s\t%v\t-\t-\t%s\n", role.Role.Name, role.Role.ID, role.Granted, dash(role.NameProblem))
			}
			for i, rule := range role.Rules {
				name, id, granted := role.Role.Name, role.Role.ID, fmt.Sprint(role.Granted)
				if i > 0 {
					name, id, granted = "", "", ""
				}
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%v\t%s\n", name, id, granted, rule.Rule, rule.Matched, rule.Reason)
			}
		}
		_ = t.Flush()
	}
	return nil
}

func printDLQ(w io.Writer, raw json.RawMessage) error {
	var dls []statusRec
	if err := json.Unmarshal(raw, &dls); err != nil {
		return fmt.Errorf("decode dead letters: %w", err)
	}
	if len(dls) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	t := tw(w)
	fmt.Fprintln(t, "ID\tDISCORD ID\tOP\tHTTP\tCODE\tTRACE ID\tWHEN\tDETAIL")
	for _, d := range dls {
		fmt.Fprintf(t, "%s/%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Guild, d.User, dash(d.DiscordUserID), dash(d.Op), d.HTTPStatus, code(d.Code),
			dash(d.TraceID), d.Time.UTC().Format(time.RFC3339), d.Detail)
	}
	return t.Flush()
}

func printReplay(w io.Writer, raw json.RawMessage) error {
	var r struct {
		Replayed int      `json:"replayed"`
		Errors   []string `json:"errors"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode replay: %w", err)
	}
	fmt.Fprintf(w, "replayed: %d now in sync\n", r.Replayed)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "still failing: %s\n", e)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("%d dead letters still failing", len(r.Errors))
	}
	return nil
}

func printRepair(w io.Writer, raw json.RawMessage) error {
	var r struct {
		Guild   string `json:"guild"`
		DryRun  bool   `json:"dry_run"`
		Members int    `json:"members"`
		Changes []struct {
			User          string   `json:"user"`
			DiscordUserID string   `json:"discord_user_id"`
			Op            string   `json:"op"`
			Add           []string `json:"add"`
			Remove        []string `json:"remove"`
			Done          bool     `json:"done"`
			Error         string   `json:"error"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode reconcile: %w", err)
	}
	mode := "applied"
	if r.DryRun {
		mode = "dry run, nothing changed"
	}
	fmt.Fprintf(w, "guild %s: %d members, %d changes (%s)\n", r.Guild, r.Members, len(r.Changes), mode)
	if len(r.Changes) == 0 {
		return nil
	}
	t := tw(w)
	fmt.Fprintln(t, "DISCORD ID\tSCIM USER\tOP\tADD\tREMOVE\tDONE")
	for _, c := range r.Changes {
		done := fmt.Sprint(c.Done)
		if c.Error != "" {
			done = "error: " + c.Error
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", c.DiscordUserID, dash(c.User), c.Op, list(c.Add), list(c.Remove), done)
	}
	return t.Flush()
}

func printRules(w io.Writer, raw json.RawMessage) error {
	var r struct {
		DryRun bool `json:"dry_run"`
		Guilds []struct {
			Guild   string `json:"guild"`
			Applied bool   `json:"applied"`
			Version uint64 `json:"version"`
			Preview struct {
				CurrentVersion json.Number `json:"current_version"`
				MembersScanned int         `json:"members_scanned"`
				Changes        []struct {
					UserName      string `json:"user_name"`
					DiscordUserID string `json:"discord_user_id"`
					Gained        []struct {
						Name string `json:"name"`
						ID   string `json:"id"`
					} `json:"gained"`
					Lost []struct {
						Name string `json:"name"`
						ID   string `json:"id"`
					} `json:"lost"`
				} `json:"changes"`
			} `json:"preview"`
		} `json:"guilds"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("decode rules apply: %w", err)
	}
	for _, g := range r.Guilds {
		p := g.Preview
		fmt.Fprintf(w, "guild %s: preview against rules version %s: %d members scanned, %d would change\n", g.Guild, p.CurrentVersion, p.MembersScanned, len(p.Changes))
		if len(p.Changes) > 0 {
			t := tw(w)
			fmt.Fprintln(t, "USER\tDISCORD ID\tGAINS\tLOSES")
			sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].UserName < p.Changes[j].UserName })
			for _, c := range p.Changes {
				var gain, lose []string
				role := func(name, id string) string {
					if name == "" {
						return id
					}
					return name + " (" + id + ")"
				}
				for _, x := range c.Gained {
					gain = append(gain, role(x.Name, x.ID))
				}
				for _, x := range c.Lost {
					lose = append(lose, role(x.Name, x.ID))
				}
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", c.UserName, dash(c.DiscordUserID), list(gain), list(lose))
			}
			_ = t.Flush()
		}
		switch {
		case g.Applied:
			fmt.Fprintf(w, "applied: rules version %d\n", g.Version)
		case r.DryRun:
			fmt.Fprintln(w, "dry run: nothing stored")
		}
	}
	return nil
}
