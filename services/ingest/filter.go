package ingest

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// maxFilterLen bounds a filter's length (a parser is not a place to spend
// unbounded time on one request).
const maxFilterLen = 4096

// parseFilter parses a SCIM filter with github.com/scim2/filter-parser/v2,
// after the named dialect pre-passes, and checks every attribute against the
// schema of kind: an unknown attribute is 400 invalidFilter, never "no filter".
func parseFilter(k resourceKind, raw string) (filter.Expression, error) {
	if len(raw) > maxFilterLen {
		return nil, badRequest(scimInvalidFilter, "filter is longer than %d bytes", maxFilterLen)
	}
	src := dialectValuePathCompare(dialectUnquotedValues(raw))
	tmpl, lits := extractLiterals(src)
	key := shapeKey{k, tmpl}
	shapes.mu.Lock()
	shape, ok := shapes.m[key]
	shapes.mu.Unlock()
	if ok {
		i := 0
		if expr := withLiterals(shape, lits, &i); expr != nil && i == len(lits) {
			return expr, nil
		}
	}
	expr, err := parseFilterSafe(src)
	if err != nil {
		return nil, badRequest(scimInvalidFilter, "cannot parse filter %q", truncate(raw, 200))
	}
	if err := checkFilterAttrs(k, expr, nil); err != nil {
		return nil, err
	}
	if shape, err := parseFilterSafe(tmpl); err == nil {
		shapes.mu.Lock()
		if len(shapes.m) >= 4096 {
			clear(shapes.m)
		}
		shapes.m[key] = shape
		shapes.mu.Unlock()
	}
	return expr, nil
}

// The filter parser is exact but slow (IdPs send the same few filter
// shapes with different values), so parsed shapes are cached: string
// literals are replaced by a placeholder, the shape is parsed once by the
// library, and each request's literals are put back in textual order.
type shapeKey struct {
	k    resourceKind
	tmpl string
}

var shapes = struct {
	mu sync.Mutex
	m  map[shapeKey]filter.Expression
}{m: map[shapeKey]filter.Expression{}}

// extractLiterals replaces every quoted string of s by "v" and returns
// their raw contents in order.
func extractLiterals(s string) (string, []string) {
	var b strings.Builder
	var lits []string
	for i := 0; i < len(s); {
		if s[i] != '"' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			b.WriteString(s[i:]) // unterminated: left for the parser to refuse
			break
		}
		lits = append(lits, s[i+1:j])
		b.WriteString(`"v"`)
		i = j + 1
	}
	return b.String(), lits
}

// withLiterals copies a parsed shape with the literals put back; nil when
// the shape does not fit.
func withLiterals(e filter.Expression, lits []string, i *int) filter.Expression {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		c := *x
		if _, isStr := x.CompareValue.(string); isStr {
			if *i >= len(lits) {
				return nil
			}
			c.CompareValue = lits[*i]
			*i++
		}
		return &c
	case *filter.LogicalExpression:
		l := withLiterals(x.Left, lits, i)
		r := withLiterals(x.Right, lits, i)
		if l == nil || r == nil {
			return nil
		}
		return &filter.LogicalExpression{Left: l, Right: r, Operator: x.Operator}
	case *filter.NotExpression:
		in := withLiterals(x.Expression, lits, i)
		if in == nil {
			return nil
		}
		return &filter.NotExpression{Expression: in}
	case *filter.ValuePath:
		in := withLiterals(x.ValueFilter, lits, i)
		if in == nil {
			return nil
		}
		return &filter.ValuePath{AttributePath: x.AttributePath, ValueFilter: in}
	}
	return nil
}

// parseFilterSafe guards the third-party parser against panics.
func parseFilterSafe(src string) (e filter.Expression, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, badRequest(scimInvalidFilter, "cannot parse filter")
		}
	}()
	return filter.ParseFilter([]byte(src))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var compareOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true, "gt": true, "ge": true, "lt": true, "le": true}

// dialectUnquotedValues is the "unquoted compare value" dialect (Microsoft's
// SCIM validator collection sends `userName eq Test_User_…`): a bare word
// after a comparison operator that is not true, false, null or a number is
// quoted. Quoted strings are left as they are.
func dialectUnquotedValues(s string) string {
	var b strings.Builder
	i := 0
	prevWord := ""
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			b.WriteString(s[i:j])
			i = j
			prevWord = ""
		case c == ' ' || c == '\t' || c == '(' || c == ')' || c == '[' || c == ']':
			b.WriteByte(c)
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t()[]\"", rune(s[j])) {
				j++
			}
			w := s[i:j]
			if compareOps[strings.ToLower(prevWord)] && !isLiteral(w) {
				b.WriteString(strconv.Quote(w))
			} else {
				b.WriteString(w)
			}
			prevWord = w
			i = j
		}
	}
	return b.String()
}

func isLiteral(w string) bool {
	switch strings.ToLower(w) {
	case "true", "false", "null":
		return true
	}
	_, err := strconv.ParseFloat(w, 64)
	return err == nil
}

// valuePathCompareRe matches Entra's `emails[type eq "work"].value eq "x"`.
var valuePathCompareRe = regexp.MustCompile(`([A-Za-z0-9_$:.-]+)\[([^\]]*)\]\.([A-Za-z0-9_$-]+)\s+(?i:(eq|ne|co|sw|ew|gt|ge|lt|le))\s+("(?:[^"\\]|\\.)*"|[^\s()]+)`)

// dialectValuePathCompare is the "value path with sub-attribute compared"
// dialect (Entra): `emails[type eq "work"].value eq "x"` is not in the RFC
// 7644 grammar; it means `emails[type eq "work" and value eq "x"]`.
// The parser has no grouping inside brackets, so a bracket filter that
// contains "or" is left alone (and refused).
func dialectValuePathCompare(s string) string {
	return valuePathCompareRe.ReplaceAllStringFunc(s, func(m string) string {
		sm := valuePathCompareRe.FindStringSubmatch(m)
		if strings.Contains(strings.ToLower(sm[2]), " or ") {
			return m
		}
		return sm[1] + "[" + sm[2] + " and " + sm[3] + " " + sm[4] + " " + sm[5] + "]"
	})
}

// checkFilterAttrs validates attribute names; parent is the multi-valued
// attribute inside a value path.
func checkFilterAttrs(k resourceKind, e filter.Expression, parent *attr) error {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		return checkAttrPath(k, x.AttributePath, parent, x.Operator)
	case *filter.LogicalExpression:
		if err := checkFilterAttrs(k, x.Left, parent); err != nil {
			return err
		}
		return checkFilterAttrs(k, x.Right, parent)
	case *filter.NotExpression:
		return checkFilterAttrs(k, x.Expression, parent)
	case *filter.ValuePath:
		a, err := resolvePath(k, x.AttributePath, nil)
		if err != nil {
			return err
		}
		if a.Type != tComplex {
			return badRequest(scimInvalidFilter, "%s is not a complex attribute", x.AttributePath.AttributeName)
		}
		return checkFilterAttrs(k, x.ValueFilter, a)
	}
	return badRequest(scimInvalidFilter, "unsupported filter expression")
}

func checkAttrPath(k resourceKind, p filter.AttributePath, parent *attr, op filter.CompareOperator) error {
	if !compareOps[string(op)] && op != filter.PR {
		return badRequest(scimInvalidFilter, "unknown operator %q", op)
	}
	_, err := resolvePath(k, p, parent)
	return err
}

// resolvePath finds the schema attribute a filter path names.
func resolvePath(k resourceKind, p filter.AttributePath, parent *attr) (*attr, error) {
	var a *attr
	if parent != nil {
		a = parent.sub(p.AttributeName)
	} else {
		_, a = lookupAttr(k, p.URI(), p.AttributeName)
	}
	if a == nil {
		return nil, badRequest(scimInvalidFilter, "unknown attribute %q in filter", p.String())
	}
	if p.SubAttribute != nil {
		s := a.sub(*p.SubAttribute)
		if s == nil {
			return nil, badRequest(scimInvalidFilter, "unknown attribute %q in filter", p.String())
		}
		return s, nil
	}
	return a, nil
}

// evalFilter reports whether the rendered resource doc matches e.
func evalFilter(k resourceKind, e filter.Expression, doc map[string]any, parent *attr) bool {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if x.Operator == filter.AND {
			return evalFilter(k, x.Left, doc, parent) && evalFilter(k, x.Right, doc, parent)
		}
		return evalFilter(k, x.Left, doc, parent) || evalFilter(k, x.Right, doc, parent)
	case *filter.NotExpression:
		return !evalFilter(k, x.Expression, doc, parent)
	case *filter.ValuePath:
		a, err := resolvePath(k, x.AttributePath, parent)
		if err != nil {
			return false
		}
		for _, el := range asList(valueAt(k, doc, x.AttributePath, parent)) {
			if m, ok := el.(map[string]any); ok && evalFilter(k, x.ValueFilter, m, a) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		a, err := resolvePath(k, x.AttributePath, parent)
		if err != nil {
			return false
		}
		vals := asList(valueAt(k, doc, x.AttributePath, parent))
		if len(vals) == 0 && x.Operator == filter.NE && x.CompareValue != nil {
			// An absent attribute does not equal the value, so `ne` matches
			// it (RFC 7644 §3.4.2.2 "does not match"), as `not (… eq …)` does.
			return true
		}
		if x.Operator == filter.PR {
			for _, v := range vals {
				if present(v) {
					return true
				}
			}
			return false
		}
		for _, v := range vals {
			if m, ok := v.(map[string]any); ok && a.Type == tComplex {
				v = m["value"] // `emails eq "x"` compares the primary "value"
			}
			if compare(a, v, x.Operator, x.CompareValue) {
				return true
			}
		}
		return false
	}
	return false
}

// valueAt collects the value(s) a path names in doc (multi-valued
// attributes are flattened for sub-attribute paths).
func valueAt(k resourceKind, doc map[string]any, p filter.AttributePath, parent *attr) any {
	var v any
	if parent != nil {
		v = getFold(doc, p.AttributeName)
	} else {
		urn, a := lookupAttr(k, p.URI(), p.AttributeName)
		if a == nil {
			return nil
		}
		src := doc
		if urn != "" {
			src, _ = doc[urn].(map[string]any)
		}
		v = src[a.Name]
	}
	if p.SubAttribute == nil {
		return v
	}
	var out []any
	for _, el := range asList(v) {
		if m, ok := el.(map[string]any); ok {
			if sv := getFold(m, *p.SubAttribute); sv != nil {
				out = append(out, sv)
			}
		}
	}
	return out
}

func getFold(m map[string]any, name string) any {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	}
	return []any{v}
}

func present(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// compare applies a comparison operator (RFC 7644 §3.4.2.2), honouring
// caseExact for strings and comparing dateTimes and numbers by value.
func compare(a *attr, v any, op filter.CompareOperator, want any) bool {
	if want == nil {
		switch op {
		case filter.EQ:
			return !present(v)
		case filter.NE:
			return present(v)
		}
		return false
	}
	switch w := want.(type) {
	case bool:
		b, ok := v.(bool)
		if !ok {
			return false
		}
		switch op {
		case filter.EQ:
			return b == w
		case filter.NE:
			return b != w
		}
		return false
	case string:
		w = unescapeFilterString(w)
		s, ok := v.(string)
		if !ok {
			if n, isNum := v.(json.Number); isNum {
				s = n.String()
			} else if b, isBool := v.(bool); isBool {
				s = strconv.FormatBool(b)
			} else {
				return false
			}
		}
		if a.Type == tDateTime {
			if c, ok := compareTimes(s, w); ok {
				return ordered(op, c)
			}
		}
		switch {
		case a.Uniqueness == "server" && !a.CaseExact && (op == filter.EQ || op == filter.NE):
			s, w = lower(s), lower(w) // userName, group displayName: the uniqueness key
		case !a.CaseExact:
			s, w = strings.ToLower(s), strings.ToLower(w)
		}
		switch op {
		case filter.EQ:
			return s == w
		case filter.NE:
			return s != w
		case filter.CO:
			return strings.Contains(s, w)
		case filter.SW:
			return strings.HasPrefix(s, w)
		case filter.EW:
			return strings.HasSuffix(s, w)
		}
		return ordered(op, strings.Compare(s, w))
	default:
		wf, ok := toFloat(want)
		if !ok {
			return false
		}
		vf, ok := toFloat(v)
		if !ok {
			return false
		}
		c := 0
		if vf < wf {
			c = -1
		} else if vf > wf {
			c = 1
		}
		switch op {
		case filter.EQ:
			return c == 0
		case filter.NE:
			return c != 0
		}
		return ordered(op, c)
	}
}

func ordered(op filter.CompareOperator, c int) bool {
	switch op {
	case filter.EQ:
		return c == 0
	case filter.NE:
		return c != 0
	case filter.GT:
		return c > 0
	case filter.GE:
		return c >= 0
	case filter.LT:
		return c < 0
	case filter.LE:
		return c <= 0
	}
	return false
}

func compareTimes(a, b string) (int, bool) {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return ta.Compare(tb), true
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, !math.IsNaN(x)
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// unescapeFilterString resolves JSON escapes in a filter string literal.
func unescapeFilterString(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out string
	if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err != nil {
		return s
	}
	return out
}

// indexedEq recognises `attr eq "value"` on an indexed attribute; the list
// handler then looks candidates up in O(1).
func indexedEq(k resourceKind, e filter.Expression) (attrName, value string, ok bool) {
	if id, ok := memberValueEq(k, e); ok {
		return "members.value", id, true
	}
	x, isAttr := e.(*filter.AttributeExpression)
	if !isAttr || x.Operator != filter.EQ || x.AttributePath.SubAttribute != nil {
		return "", "", false
	}
	v, isStr := x.CompareValue.(string)
	if !isStr {
		return "", "", false
	}
	urn, a := lookupAttr(k, x.AttributePath.URI(), x.AttributePath.AttributeName)
	if a == nil {
		return "", "", false
	}
	name := a.Name
	if urn == SchemaDiscord {
		name = "discord"
	}
	switch {
	case name == "id", name == "externalId", name == "discord",
		k == kindUser && name == "userName", k == kindGroup && name == "displayName":
		return name, unescapeFilterString(v), true
	}
	return "", "", false
}

// memberValueEq recognises a group filter `members.value eq "id"` or
// `members[value eq "id"]`: answered from the view's user → groups index in
// O(groups of the user), without rendering any member list.
func memberValueEq(k resourceKind, e filter.Expression) (string, bool) {
	if k != kindGroup {
		return "", false
	}
	switch x := e.(type) {
	case *filter.AttributeExpression:
		p := x.AttributePath
		if x.Operator != filter.EQ || p.SubAttribute == nil || !strings.EqualFold(*p.SubAttribute, "value") ||
			!strings.EqualFold(p.AttributeName, "members") || (p.URI() != "" && !strings.EqualFold(p.URI(), SchemaGroup)) {
			return "", false
		}
		v, ok := x.CompareValue.(string)
		return unescapeFilterString(v), ok
	case *filter.ValuePath:
		p := x.AttributePath
		if p.SubAttribute != nil || !strings.EqualFold(p.AttributeName, "members") || (p.URI() != "" && !strings.EqualFold(p.URI(), SchemaGroup)) {
			return "", false
		}
		return simpleValueEq(x.ValueFilter)
	}
	return "", false
}
