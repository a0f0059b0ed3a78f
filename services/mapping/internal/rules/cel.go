package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
)

// CEL limits. An expression is compiled once (when its rule set is written or
// loaded) and evaluated with a cost limit, so a rule cannot stall resolves.
const (
	// CostLimit bounds the runtime cost of one evaluation (CEL cost units).
	CostLimit = 10000
	// parserRecursionLimit bounds the nesting of an expression.
	parserRecursionLimit = 50
)

// ErrExprCost means an expression hit the cost limit at evaluation.
var ErrExprCost = errors.New("rules: expression exceeded its cost limit")

// ErrUserJSON means a member's user JSON is not a readable JSON object. It is
// a bad request, never "no CEL rule matches": treating it as no match would
// remove every role that a CEL rule grants.
var ErrUserJSON = errors.New("rules: user JSON is not a JSON object")

// MaxAttrLen is the longest string value (in bytes) of the user JSON that
// CEL sees: a longer value is left out of `user`, as if absent (the applier
// drops such values too when a record is oversized). Together with the cost
// limit it bounds what one call can allocate: CEL charges a string function
// after it returns, so without the cap `user.title.replace("", user.title)`
// over a 5,000-character title would build 25 MB before being stopped. Group
// names in `groups` are capped the same way.
const MaxAttrLen = 1024

// CheckUserJSON reports whether b can be a member's user JSON: empty (no user
// document) or a JSON object. The error wraps ErrUserJSON.
func CheckUserJSON(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%w: %s", ErrUserJSON, describeJSON(t))
	}
	if !json.Valid(t) {
		return fmt.Errorf("%w: not valid JSON", ErrUserJSON)
	}
	return nil
}

func describeJSON(t []byte) string {
	if len(t) == 0 {
		return "only white space"
	}
	switch t[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	if t[0] == '-' || (t[0] >= '0' && t[0] <= '9') {
		return "a number"
	}
	return "not valid JSON"
}

// UserAliases are the short names under `user` for the SCIM schema extensions.
var UserAliases = map[string]string{
	"enterprise": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
	"discord":    "urn:ietf:params:scim:schemas:extension:discord:2.0:User",
}

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		// user is the SCIM user JSON, with user.enterprise and user.discord as
		// short names of the schema extensions and user.active always present.
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		// groups are the user's SCIM groups: {id, externalId, displayName}.
		cel.Variable("groups", cel.ListType(cel.MapType(cel.StringType, cel.StringType))),
		ext.Strings(),
		cel.ParserRecursionLimit(parserRecursionLimit),
		cel.ParserExpressionSizeLimit(MaxExprLen),
	)
})

// compileMu serialises compiles on the shared environment (see CompileExpr).
var compileMu sync.Mutex

// Expr is a compiled, type-checked CEL condition.
type Expr struct {
	src string
	prg cel.Program
}

// String returns the source.
func (e *Expr) String() string { return e.src }

// CompileExpr parses and type-checks a condition: it must be a boolean
// expression over `user` and `groups` (checked type bool; dyn is refused).
func CompileExpr(src string) (*Expr, error) { return compileExpr(src, true) }

// compileExpr compiles src; strict refuses a dyn result (every write is
// strict; a rule set stored before the check existed still loads).
func compileExpr(src string, strict bool) (*Expr, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("expression is empty")
	}
	if len(src) > MaxExprLen {
		return nil, fmt.Errorf("expression is %d characters, over %d", len(src), MaxExprLen)
	}
	// cel-go v0.33.3's checker initialises a lazy catalog on the shared
	// environment without synchronisation (a data race between concurrent
	// Compile calls), so compiles are serialised. They happen on writes and
	// loads only, never on the resolve path.
	compileMu.Lock()
	ast, iss := env.Compile(src)
	var prg cel.Program
	if iss == nil || iss.Err() == nil {
		// The checked type must be bool. An attribute of `user` is dyn (its
		// type is known only at evaluation), so a bare `user.active` or a
		// conditional over attributes is refused: compare it (`user.active ==
		// true`) or convert it (`bool(user.active)`).
		if out := ast.OutputType(); out.IsDyn() && strict {
			compileMu.Unlock()
			return nil, errors.New("CEL expression gives dyn (a user attribute's type is known only at evaluation), want bool: compare it, e.g. user.active == true, or wrap it in bool(...)")
		} else if !out.IsExactType(types.BoolType) && !out.IsDyn() {
			compileMu.Unlock()
			return nil, fmt.Errorf("CEL expression gives %s, want bool", out)
		}
		prg, err = env.Program(ast,
			cel.CostLimit(CostLimit),
			cel.InterruptCheckFrequency(100),
			cel.EvalOptions(cel.OptOptimize),
		)
	}
	compileMu.Unlock()
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("CEL does not compile: %s", oneLine(iss.Err().Error()))
	}
	if err != nil {
		return nil, fmt.Errorf("CEL program: %s", oneLine(err.Error()))
	}
	return &Expr{src: src, prg: prg}, nil
}

// oneLine keeps the first line of each CEL issue (not the source excerpt).
func oneLine(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "|") {
			continue
		}
		l = strings.TrimPrefix(strings.TrimSpace(l), "ERROR: <input>:")
		if l != "" {
			out = append(out, "at "+l)
		}
	}
	return strings.Join(out, "; ")
}

// Eval evaluates the condition. A non-boolean result, a missing attribute or
// the cost limit give an error: the rule does not match, and Explain says why.
func (e *Expr) Eval(ctx context.Context, in *Input) (bool, error) {
	act, err := in.activation()
	if err != nil {
		return false, err
	}
	out, _, err := e.prg.ContextEval(ctx, act)
	if err != nil {
		if strings.Contains(err.Error(), "cost limit") {
			return false, fmt.Errorf("%w: %v", ErrExprCost, err)
		}
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("expression gave %v (%s), want bool", out.Value(), out.Type().TypeName())
	}
	return b, nil
}

// Input is one member's data for CEL, decoded lazily and at most once.
type Input struct {
	Member *Member
	once   sync.Once
	act    map[string]any
	err    error
}

func (in *Input) activation() (map[string]any, error) {
	in.once.Do(func() {
		m := in.Member
		user := map[string]any{}
		if len(m.UserJSON) > 0 {
			if err := CheckUserJSON(m.UserJSON); err != nil {
				in.err = err
				return
			}
			if err := json.Unmarshal(m.UserJSON, &user); err != nil {
				in.err = fmt.Errorf("%w: %v", ErrUserJSON, err)
				return
			}
			if user == nil {
				user = map[string]any{}
			}
			dropLongStrings(user)
		}
		for alias, urn := range UserAliases {
			if v, ok := user[urn]; ok {
				if _, taken := user[alias]; !taken {
					user[alias] = v
				}
			}
			// Always present, so that has(user.enterprise.department) is
			// false (not an error) for a user without the extension.
			if _, ok := user[alias]; !ok {
				user[alias] = map[string]any{}
			}
		}
		user["active"] = m.Active
		if _, ok := user["id"]; !ok && m.UserID != "" {
			user["id"] = m.UserID
		}
		groups := make([]map[string]string, len(m.Groups))
		for i, g := range m.Groups {
			groups[i] = map[string]string{"id": capString(g.ID), "externalId": capString(g.ExternalID), "displayName": capString(g.DisplayName)}
		}
		in.act = map[string]any{"user": user, "groups": groups}
	})
	return in.act, in.err
}

// dropLongStrings removes, in place, every string value longer than
// MaxAttrLen from objects and arrays.
func dropLongStrings(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && len(s) > MaxAttrLen {
				delete(x, k)
				continue
			}
			x[k] = dropLongStrings(e)
		}
		return x
	case []any:
		out := x[:0]
		for _, e := range x {
			if s, ok := e.(string); ok && len(s) > MaxAttrLen {
				continue
			}
			out = append(out, dropLongStrings(e))
		}
		return out
	}
	return v
}

// capString leaves a group key out of CEL (empty) when it is over MaxAttrLen.
func capString(s string) string {
	if len(s) > MaxAttrLen {
		return ""
	}
	return s
}
