package scimcord_test

import (
	"context"
	"testing"
)

// TestEndToEnd_UnderBothEmulatorProfiles runs the whole path against the
// emulator's strict defaults and against the alternative settings of the
// behaviours Discord leaves uncertain (discord-emulator.md §13): the product
// must pass under both.
func TestEndToEnd_UnderBothEmulatorProfiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		knobs map[string]any
	}{
		{"strict defaults", nil},
		{"alternative knobs", map[string]any{
			"strict":    map[string]any{"check_untouched_roles": false, "unknown_role_in_patch": "50035", "patch_member_204": true},
			"ratelimit": map[string]any{"algorithm": "sliding"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sys, _ := startSystem(t, t.TempDir())
			emu := sys.Emulator()
			if tc.knobs != nil {
				if err := emu.Admin().SetConfig(context.Background(), tc.knobs); err != nil {
					t.Fatal(err)
				}
			}
			c := scimClient{t: t, base: sys.BaseURL(), token: sys.Token()}
			eng := c.mustDo("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Engineering"}, 201)
			design := c.mustDo("POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Design"}, 201)
			u := c.mustDo("POST", "/Users", userBody("knobs@example.com", ""), 201)
			c.mustDo("PATCH", "/Groups/"+eng["id"].(string), patchOp("add", "members", []map[string]any{{"value": u["id"]}}), 200, 204)

			seq := emu.Recorder().NextSeq()
			c.mustDo("PATCH", "/Users/"+u["id"].(string),
				patchOp("replace", "urn:ietf:params:scim:schemas:extension:discord:2.0:User:userId", memberWithM), 200, 204)
			waitRoles(t, emu, memberWithM, roleEng, roleStaff, roleMod)
			m := mutations(emu, memberWithM, seq)
			if len(m) != 1 || m[0].Route != "member_edit" {
				t.Fatalf("link: want one PATCH member, got %v", routes(m))
			}
			if want := map[bool]int{false: 200, true: 204}[tc.knobs != nil]; m[0].Outcome.Status != want {
				t.Fatalf("PATCH member answered %d, want %d under %s", m[0].Outcome.Status, want, tc.name)
			}

			seq = emu.Recorder().NextSeq()
			c.mustDo("PATCH", "/Groups/"+design["id"].(string), patchOp("add", "members", []map[string]any{{"value": u["id"]}}), 200, 204)
			waitRoles(t, emu, memberWithM, roleEng, roleDesign, roleStaff, roleMod)
			if m := mutations(emu, memberWithM, seq); len(m) != 1 {
				t.Fatalf("group add: want one call, got %v", routes(m))
			}

			seq = emu.Recorder().NextSeq()
			c.mustDo("PATCH", "/Users/"+u["id"].(string), patchOp("replace", "active", false), 200, 204)
			waitRoles(t, emu, memberWithM, roleMod)
			if m := mutations(emu, memberWithM, seq); len(m) != 1 || m[0].Route != "member_edit" {
				t.Fatalf("deactivate: want one PATCH member, got %v", routes(m))
			}
			emu.Recorder().AssertNoRateLimits(t)
			emu.Recorder().AssertAllReasonsEncoded(t)
		})
	}
}
