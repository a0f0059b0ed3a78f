package ingest_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// idpCasesPath is the shared case file, relative to this package.
const idpCasesPath = "../../../shared/cases/idp-cases.jsonl"

// idpCase is one line of idp-cases.jsonl (format: shared/cases/README.md).
type idpCase struct {
	ID         string        `json:"id"`
	Title      string        `json:"title"`
	Requires   []string      `json:"requires"`
	Setup      []caseRequest `json:"setup"`
	Request    caseRequest   `json:"request"`
	Expect     caseExpect    `json:"expect"`
	Then       []caseThen    `json:"then"`
	Concurrent []caseRequest `json:"concurrent"`
}

type caseRequest struct {
	Name    *string                    `json:"name"`
	Method  string                     `json:"method"`
	Path    string                     `json:"path"`
	Headers map[string]*string         `json:"headers"`
	Body    json.RawMessage            `json:"body"`
	RawBody *string                    `json:"rawBody"`
	Extra   map[string]json.RawMessage `json:"-"`
}

type caseThen struct {
	Request caseRequest `json:"request"`
	Expect  caseExpect  `json:"expect"`
}

type caseExpect struct {
	Status      json.RawMessage            `json:"status"`
	JSON        map[string]any             `json:"json"`
	Contains    map[string]any             `json:"contains"`
	NotContains map[string]any             `json:"notContains"`
	Present     []string                   `json:"present"`
	Absent      []string                   `json:"absent"`
	Types       map[string]string          `json:"types"`
	Length      map[string]int             `json:"length"`
	MaxLength   map[string]int             `json:"maxLength"`
	Gte         map[string]float64         `json:"gte"`
	NotEqual    map[string]any             `json:"notEqual"`
	Headers     map[string]string          `json:"headers"`
	Notes       string                     `json:"notes"`
	Unknown     map[string]json.RawMessage `json:"-"`
}

// caseResult is a response as the expectations see it.
type caseResult struct {
	status int
	header http.Header
	body   any
	raw    []byte
}

// caseRun holds one execution's placeholder values.
type caseRun struct {
	t       *testing.T
	base    string
	tokens  map[string]string
	vars    map[string]string
	results map[string]caseResult
}

var placeholderRe = regexp.MustCompile(`\{\{([^{}]+)\}\}`)

func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// subst replaces the placeholders of one string.
func (r *caseRun) subst(s string) string {
	return placeholderRe.ReplaceAllStringFunc(s, func(m string) string {
		key := strings.TrimSpace(m[2 : len(m)-2])
		if v, ok := r.vars[key]; ok {
			return v
		}
		step, path, ok := strings.Cut(key, ".")
		res, found := r.results[step]
		if !ok || !found {
			r.t.Fatalf("unknown placeholder %s", m)
		}
		if h, ok := strings.CutPrefix(path, "header."); ok {
			return res.header.Get(h)
		}
		vals, ok := lookupPath(res.body, path)
		if !ok || len(vals) == 0 {
			r.t.Fatalf("placeholder %s: no value at %q in %s", m, path, res.raw)
		}
		switch v := vals[0].(type) {
		case string:
			return v
		default:
			b, _ := json.Marshal(v)
			return string(b)
		}
	})
}

// substJSON replaces placeholders inside every string of a JSON value.
func (r *caseRun) substJSON(v any) any {
	switch x := v.(type) {
	case string:
		return r.subst(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.substJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.subst(k)] = r.substJSON(e)
		}
		return out
	}
	return v
}

// send performs one case request.
func (r *caseRun) send(cr caseRequest) caseResult {
	r.t.Helper()
	var body io.Reader
	hasBody := false
	switch {
	case cr.RawBody != nil:
		body, hasBody = strings.NewReader(r.subst(*cr.RawBody)), true
	case len(cr.Body) > 0 && string(cr.Body) != "null":
		var v any
		if err := json.Unmarshal(cr.Body, &v); err != nil {
			r.t.Fatalf("case body: %v", err)
		}
		data, _ := json.Marshal(r.substJSON(v))
		body, hasBody = bytes.NewReader(data), true
	}
	// The path is sent byte for byte as written (already URL-encoded).
	url := r.base + r.subst(cr.Path)
	req, err := http.NewRequest(cr.Method, url, body)
	if err != nil {
		r.t.Fatalf("request %s %s: %v", cr.Method, url, err)
	}
	if _, ok := cr.Headers["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer "+r.tokens["token"])
	}
	if hasBody {
		if _, ok := cr.Headers["Content-Type"]; !ok {
			req.Header.Set("Content-Type", "application/scim+json")
		}
	}
	for k, v := range cr.Headers {
		if v == nil {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, r.subst(*v))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", cr.Method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := caseResult{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		_ = dec.Decode(&out.body)
	}
	return out
}

// splitCasePath splits a simple JSON path: dots separate keys, [..] is a
// literal key.
func splitCasePath(p string) []string {
	var out []string
	for len(p) > 0 {
		if p[0] == '[' {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				out = append(out, p[1:])
				break
			}
			out = append(out, p[1:end])
			p = strings.TrimPrefix(p[end+1:], ".")
			continue
		}
		seg, rest, found := strings.Cut(p, ".")
		out = append(out, seg)
		if !found {
			break
		}
		p = rest
	}
	return out
}

// lookupPath returns the values at a path; `*` collects across an array.
func lookupPath(v any, path string) ([]any, bool) {
	cur := []any{v}
	collected := false
	for _, seg := range splitCasePath(path) {
		var next []any
		for _, c := range cur {
			switch x := c.(type) {
			case map[string]any:
				if e, ok := x[seg]; ok {
					next = append(next, e)
				}
			case []any:
				if seg == "*" {
					next = append(next, x...)
					collected = true
				} else if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(x) {
					next = append(next, x[i])
				}
			}
		}
		cur = next
	}
	if collected {
		return cur, true
	}
	return cur, len(cur) > 0
}

func normNum(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case int:
		return float64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normNum(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normNum(e)
		}
		return out
	}
	return v
}

func equalJSON(a, b any) bool { return reflect.DeepEqual(normNum(a), normNum(b)) }

func collect(body any, path string) []any {
	vals, _ := lookupPath(body, path)
	if len(vals) == 1 {
		if arr, ok := vals[0].([]any); ok && !strings.HasSuffix(path, "*") {
			return arr
		}
	}
	return vals
}

// check verifies one response against its expectations; it returns the
// failures.
func (r *caseRun) check(res caseResult, ex caseExpect) []string {
	var fails []string
	failf := func(f string, a ...any) { fails = append(fails, fmt.Sprintf(f, a...)) }
	if len(ex.Status) > 0 {
		var one int
		var many []int
		ok := false
		if json.Unmarshal(ex.Status, &one) == nil {
			ok = res.status == one
		} else if json.Unmarshal(ex.Status, &many) == nil {
			for _, s := range many {
				ok = ok || res.status == s
			}
		}
		if !ok {
			failf("status %d, want %s", res.status, ex.Status)
		}
	}
	want := func(v any) any { return r.substJSON(v) }
	for p, v := range ex.JSON {
		got, ok := lookupPath(res.body, p)
		if !ok || len(got) != 1 || !equalJSON(got[0], want(v)) {
			failf("json %s = %v, want %v", p, got, want(v))
		}
	}
	for p, v := range ex.Contains {
		got := collect(res.body, p)
		for _, w := range asAnyList(want(v)) {
			if !containsJSON(got, w) {
				failf("contains %s: %v not in %v", p, w, got)
			}
		}
	}
	for p, v := range ex.NotContains {
		got := collect(res.body, p)
		for _, w := range asAnyList(want(v)) {
			if containsJSON(got, w) {
				failf("notContains %s: %v is in %v", p, w, got)
			}
		}
	}
	for _, p := range ex.Present {
		got, ok := lookupPath(res.body, p)
		if !ok || len(got) == 0 || got[0] == nil {
			failf("present %s: missing", p)
		}
	}
	for _, p := range ex.Absent {
		got, ok := lookupPath(res.body, p)
		if ok && len(got) > 0 && got[0] != nil {
			failf("absent %s: found %v", p, got)
		}
	}
	for p, typ := range ex.Types {
		got, ok := lookupPath(res.body, p)
		if !ok || len(got) == 0 || jsonType(got[0]) != typ {
			failf("types %s: %v is not a %s", p, got, typ)
		}
	}
	for p, n := range ex.Length {
		if l := arrayLen(res.body, p); l != n {
			failf("length %s = %d, want %d", p, l, n)
		}
	}
	for p, n := range ex.MaxLength {
		if l := arrayLen(res.body, p); l > n {
			failf("maxLength %s = %d, want <= %d", p, l, n)
		}
	}
	for p, n := range ex.Gte {
		got, ok := lookupPath(res.body, p)
		f, isNum := 0.0, false
		if ok && len(got) == 1 {
			if num, ok := normNum(got[0]).(float64); ok {
				f, isNum = num, true
			}
		}
		if !isNum || f < n {
			failf("gte %s = %v, want >= %v", p, got, n)
		}
	}
	for p, v := range ex.NotEqual {
		got, ok := lookupPath(res.body, p)
		if ok && len(got) == 1 && equalJSON(got[0], want(v)) {
			failf("notEqual %s = %v", p, got[0])
		}
	}
	for h, prefix := range ex.Headers {
		if got := res.header.Get(h); !strings.HasPrefix(got, r.subst(prefix)) {
			failf("header %s = %q, want prefix %q", h, got, r.subst(prefix))
		}
	}
	if len(fails) > 0 {
		fails = append(fails, "body: "+truncateText(string(res.raw), 600))
	}
	return fails
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func asAnyList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func containsJSON(list []any, v any) bool {
	for _, e := range list {
		if equalJSON(e, v) {
			return true
		}
	}
	return false
}

func arrayLen(body any, p string) int {
	got, ok := lookupPath(body, p)
	if !ok || len(got) == 0 {
		return 0
	}
	if arr, ok := got[0].([]any); ok {
		return len(arr)
	}
	return 0
}

func jsonType(v any) string {
	switch v.(type) {
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "null"
}

func loadIdPCases(t *testing.T) []idpCase {
	t.Helper()
	f, err := os.Open(idpCasesPath)
	if os.IsNotExist(err) {
		t.Skipf("%s not found", idpCasesPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []idpCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var c idpCase
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("bad case line %q: %v", truncateText(line, 80), err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestIdPCases runs every request that real IdPs send (shared/cases) against
// the real ingest: embedded NATS, real HTTP, two tenants.
func TestIdPCases(t *testing.T) {
	t.Parallel()
	cases := loadIdPCases(t)
	e := newEnv(t, 1)
	for _, c := range cases {
		t.Run(c.ID, func(t *testing.T) {
			t.Parallel()
			for _, req := range c.Requires {
				switch req {
				case "token_b", "etag":
				default:
					t.Skipf("capability %q not provided", req)
				}
			}
			r := &caseRun{t: t, base: e.urls[0], tokens: map[string]string{"token": tokenA},
				vars: map[string]string{"token": tokenA, "token_b": tokenB, "run": randomToken(8)}, results: map[string]caseResult{}}
			for i := 1; i <= 9; i++ {
				r.vars["uuid"+strconv.Itoa(i)] = randomUUID()
			}
			for i, s := range c.Setup {
				res := r.send(s)
				if res.status < 200 || res.status > 299 {
					t.Fatalf("%s setup %d (%s %s): status %d: %s", c.ID, i, s.Method, s.Path, res.status, res.raw)
				}
				if s.Name != nil {
					r.results[*s.Name] = res
				}
			}
			var main caseResult
			var conc []caseResult
			if len(c.Concurrent) > 0 {
				var wg sync.WaitGroup
				conc = make([]caseResult, len(c.Concurrent))
				start := make(chan struct{})
				for i, cr := range c.Concurrent {
					wg.Go(func() {
						<-start
						conc[i] = r.send(cr)
					})
				}
				wg.Go(func() {
					<-start
					main = r.send(c.Request)
				})
				close(start)
				wg.Wait()
			} else {
				main = r.send(c.Request)
			}
			r.results["main"] = main
			if fails := r.check(main, c.Expect); len(fails) > 0 {
				t.Errorf("%s %s: %s %s:\n  %s", c.ID, c.Title, c.Request.Method, c.Request.Path, strings.Join(fails, "\n  "))
			}
			for i, cr := range conc {
				if fails := r.check(cr, caseExpect{Status: c.Expect.Status}); len(fails) > 0 {
					t.Errorf("%s concurrent %d: %s", c.ID, i, strings.Join(fails, "; "))
				}
			}
			for i, th := range c.Then {
				res := r.send(th.Request)
				if fails := r.check(res, th.Expect); len(fails) > 0 {
					t.Errorf("%s then %d: %s %s:\n  %s", c.ID, i, th.Request.Method, r.subst(th.Request.Path), strings.Join(fails, "\n  "))
				}
			}
		})
	}
}
