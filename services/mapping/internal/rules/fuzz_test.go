package rules

import (
	"context"
	"os"
	"testing"
)

func FuzzDecodeFile(f *testing.F) {
	if dev, err := os.ReadFile("../../../../deploy/dev/mapping.yaml"); err == nil {
		f.Add(dev)
	}
	f.Add([]byte(head + kindsIndented()))
	f.Add([]byte("tenants: [{id: dev, guilds: [{id: \"1100000000000000000\", rules: [{name: a, when: 'user.active == true', roles: [{name: X}]}]}]}]"))
	f.Add([]byte("tenants:\n  - id: dev\n    guilds: &a\n      - id: *a\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := DecodeFile(data)
		if err != nil {
			return
		}
		// Whatever decodes compiles, and survives the stored round trip.
		for _, tn := range file.Tenants {
			for i := range tn.Guilds {
				g := &tn.Guilds[i]
				rs, err := Compile(tn.ID, 1, g)
				if err != nil {
					t.Fatalf("decoded rule set does not compile: %v", err)
				}
				if _, err := rs.Resolve(context.Background(), &Member{Active: true, Groups: []Group{{DisplayName: "Engineering"}}, UserJSON: []byte(`{"title":"Lead"}`)}); err != nil {
					t.Fatalf("resolve: %v", err)
				}
				y, err := EncodeGuild(g)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if _, err := DecodeGuild(tn.ID, g.ID, y); err != nil {
					t.Fatalf("re-decode of %q: %v", y, err)
				}
			}
		}
	})
}

func kindsIndented() string {
	out := ""
	for _, l := range splitLines(kinds)[1:] {
		out += "        " + l + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func FuzzCELInput(f *testing.F) {
	f.Add(`user.enterprise.department == "Engineering" && user.active`, `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Engineering"}}`)
	f.Add(`groups.exists(g, g.displayName == "Design")`, `{}`)
	f.Add(`user.emails.exists(e, e.value.endsWith("@example.com"))`, `{"emails":[{"value":"a@example.com"}]}`)
	f.Add(`size(user.userName) > 3`, `{"userName":null}`)
	f.Add(`user.x.y.z`, `[1,2]`)
	f.Fuzz(func(t *testing.T, expr, userJSON string) {
		e, err := CompileExpr(expr)
		if err != nil {
			return
		}
		in := &Input{Member: &Member{Active: true, UserJSON: []byte(userJSON), Groups: []Group{{ID: "g", DisplayName: "Design"}}}}
		_, _ = e.Eval(context.Background(), in) // must return (cost-limited), never panic
	})
}
