package ingest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// record reads the latest record of a key from the resource bucket.
func (e *env) record(t *testing.T, key string) *eventv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, eventbus.ResourceBucket)
	if err != nil {
		t.Fatal(err)
	}
	en, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(en.Value(), ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestActiveIsNeverGrantedByOmission: removing "active", setting it to
// null, or leaving it out of a PUT keeps the user's state — it never
// re-activates a deactivated user (README: decisions).
func TestActiveIsNeverGrantedByOmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	cases := []struct {
		name      string
		start     bool // active before the change
		method    string
		body      func(userName string) any
		wantAfter bool
	}{
		{"PATCH remove active on a deactivated user", false, "PATCH",
			func(string) any { return patchBody(map[string]any{"op": "remove", "path": "active"}) }, false},
		{"PATCH replace active null on a deactivated user", false, "PATCH",
			func(string) any { return patchBody(map[string]any{"op": "replace", "path": "active", "value": nil}) }, false},
		{"PATCH no-path replace with active null on a deactivated user", false, "PATCH",
			func(string) any {
				return patchBody(map[string]any{"op": "replace", "value": map[string]any{"active": nil, "nickName": "n"}})
			}, false},
		{"PUT without active on a deactivated user", false, "PUT",
			func(un string) any { b := userBody(un); delete(b, "active"); return b }, false},
		{"PATCH remove active on an active user", true, "PATCH",
			func(string) any { return patchBody(map[string]any{"op": "remove", "path": "active"}) }, true},
		{"PUT with active true reactivates", false, "PUT",
			func(un string) any { return userBody(un) }, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			un := "omit" + string(rune('a'+i)) + "@example.com"
			id := e.mustCreateUser(un, map[string]any{"active": tc.start})
			r := e.do(tc.method, "/Users/"+id, tc.body(un))
			if r.status/100 != 2 {
				t.Fatalf("%s: %d %s", tc.method, r.status, r.raw)
			}
			g := e.do("GET", "/Users/"+id, nil)
			if g.body["active"] != tc.wantAfter {
				t.Fatalf("GET active = %v, want %v: %s", g.body["active"], tc.wantAfter, g.raw)
			}
			if ev := e.record(t, "acme.u."+id); ev.GetUser().GetActive() != tc.wantAfter {
				t.Fatalf("stored event active = %v, want %v (the applier acts on it)", ev.GetUser().GetActive(), tc.wantAfter)
			}
		})
	}
	t.Run("a user created without active is stored active", func(t *testing.T) {
		b := userBody("noactive@example.com")
		delete(b, "active")
		r := e.do("POST", "/Users", b)
		if r.status != 201 || r.body["active"] != true {
			t.Fatalf("create: %d %s", r.status, r.raw)
		}
	})
}

// TestStoredResourceSizeIsCapped: a resource cannot grow past
// MaxResourceBytes (256 KiB) — the write gets 400 invalidValue naming the
// limit, never a 5xx an IdP would retry forever; the resource is unchanged.
func TestStoredResourceSizeIsCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	big := strings.Repeat("x", 100<<10)
	id := e.mustCreateUser("grow@example.com")
	gid := e.do("POST", "/Groups", map[string]any{"displayName": "Grow"}).str("id")
	addEmail := func(i int) any {
		return patchBody(map[string]any{"op": "add", "path": "emails", "value": []any{map[string]any{"value": big + string(rune('a'+i)), "type": "other"}}})
	}
	tooBig := func(t *testing.T, r resp) {
		t.Helper()
		if r.status != 400 || r.str("scimType") != "invalidValue" || !strings.Contains(r.str("detail"), "262144") {
			t.Fatalf("status %d, want 400 invalidValue naming the limit: %.300s", r.status, r.raw)
		}
	}
	t.Run("PATCHes that grow a user past the limit", func(t *testing.T) {
		for i := range 2 {
			if r := e.do("PATCH", "/Users/"+id, addEmail(i)); r.status != 204 {
				t.Fatalf("PATCH %d: %d %.300s", i, r.status, r.raw)
			}
		}
		before := e.do("GET", "/Users/"+id, nil)
		tooBig(t, e.do("PATCH", "/Users/"+id, addEmail(2)))
		if after := e.do("GET", "/Users/"+id, nil); after.header.Get("ETag") != before.header.Get("ETag") {
			t.Fatal("refused PATCH changed the user")
		}
	})
	t.Run("create of a user over the limit", func(t *testing.T) {
		tooBig(t, e.do("POST", "/Users", userBody("huge@example.com", map[string]any{"nickName": big + big + big})))
		// The refused create left no claim behind.
		if r := e.do("POST", "/Users", userBody("huge@example.com")); r.status != 201 {
			t.Fatalf("create after the refused one: %d %s", r.status, r.raw)
		}
	})
	t.Run("PUT of a group over the limit", func(t *testing.T) {
		tooBig(t, e.do("PUT", "/Groups/"+gid, map[string]any{"displayName": "Grow", "externalId": big + big + big}))
	})
	t.Run("member display over its limit", func(t *testing.T) {
		r := e.do("PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": id, "display": big}}}))
		if r.status != 400 || r.str("scimType") != "invalidValue" {
			t.Fatalf("status %d, want 400 invalidValue: %.300s", r.status, r.raw)
		}
	})
}

// TestDiscordUserIDIsCanonical: a Discord id has one spelling (an unsigned
// 64-bit integer, no leading zeros), so uniqueness cannot be bypassed.
func TestDiscordUserIDIsCanonical(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ext := func(v string) map[string]any {
		return map[string]any{"urn:ietf:params:scim:schemas:extension:discord:2.0:User": map[string]any{"userId": v}}
	}
	holder := e.mustCreateUser("holder@example.com", ext("1100000000000001001"))
	cases := []struct {
		name, id string
		status   int
	}{
		{"leading zero of a taken id", "01100000000000001001", 400},
		{"leading zeros", "00000000000000000001", 400},
		{"above 2^64-1", "99999999999999999999", 400},
		{"2^64 exactly", "18446744073709551616", 400},
		{"2^64-1", "18446744073709551615", 201},
		{"the taken id itself", "1100000000000001001", 409},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/Users", userBody("snow"+string(rune('a'+i))+"@example.com", ext(tc.id)))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 400 && r.str("scimType") != "invalidValue" {
				t.Fatalf("scimType %q, want invalidValue", r.str("scimType"))
			}
		})
	}
	t.Run("PATCH to a non-canonical id", func(t *testing.T) {
		r := e.do("PATCH", "/Users/"+holder, patchBody(map[string]any{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:discord:2.0:User:userId", "value": "01100000000000001001"}))
		if r.status != 400 {
			t.Fatalf("status %d, want 400: %s", r.status, r.raw)
		}
	})
}

// setMaxMsgSize changes the resource stream's message size limit: JetStream
// then refuses larger records — a real fault in the middle of a
// multi-record write. -1 restores "no limit".
func (e *env) setMaxMsgSize(t *testing.T, n int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, eventbus.ResourceStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = n
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestFailedMultiRecordWritesRetryCleanly: when JetStream refuses a record
// in the middle of a multi-record change, the 503 tells the truth and a
// retry of the same request completes the change (it is not refused as a
// duplicate of itself).
func TestFailedMultiRecordWritesRetryCleanly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	u1 := e.mustCreateUser("part1@example.com")
	u2 := e.mustCreateUser("part2@example.com")
	longDisplay := strings.Repeat("d", 1000)
	const nothingChanged = "nothing was changed"
	const mayBePartial = "may have been applied in part"
	want503 := func(t *testing.T, r resp, detail string) {
		t.Helper()
		if r.status != 503 || !strings.Contains(r.str("detail"), detail) {
			t.Fatalf("status %d, want 503 saying %q: %s", r.status, detail, r.raw)
		}
	}

	t.Run("group create whose second membership is refused", func(t *testing.T) {
		body := map[string]any{"displayName": "Partial", "members": []any{
			map[string]any{"value": u1}, map[string]any{"value": u2, "display": longDisplay}}}
		e.setMaxMsgSize(t, 900) // the group and u1's membership fit; u2's does not
		r := e.do("POST", "/Groups", body)
		e.setMaxMsgSize(t, -1)
		// Nothing visible was changed: no group, no membership.
		want503(t, r, nothingChanged)
		if l := e.do("GET", "/Groups?filter="+q(`displayName eq "Partial"`), nil); l.body["totalResults"] != float64(0) {
			t.Fatalf("a failed create left a group: %s", l.raw)
		}
		r = e.do("POST", "/Groups", body)
		if r.status != 201 {
			t.Fatalf("retry of the create: %d %s", r.status, r.raw)
		}
		if m, _ := r.body["members"].([]any); len(m) != 2 {
			t.Fatalf("retry: %d members, want 2", len(m))
		}
		if g := e.do("GET", "/Users/"+u1, nil); len(g.body["groups"].([]any)) != 1 {
			t.Fatalf("u1 is in %d groups, want 1: %s", len(g.body["groups"].([]any)), g.raw)
		}
	})

	t.Run("user create that is refused", func(t *testing.T) {
		e.setMaxMsgSize(t, 300) // smaller than any user record
		r := e.do("POST", "/Users", userBody("refused@example.com"))
		e.setMaxMsgSize(t, -1)
		want503(t, r, nothingChanged)
		if r := e.do("POST", "/Users", userBody("refused@example.com")); r.status != 201 {
			t.Fatalf("retry of the create: %d %s", r.status, r.raw)
		}
	})

	t.Run("group PATCH of attributes and members refused part-way", func(t *testing.T) {
		gid := e.do("POST", "/Groups", map[string]any{"displayName": "Partial patch"}).str("id")
		body := patchBody(
			map[string]any{"op": "replace", "path": "displayName", "value": "Partial patched"},
			map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": u2, "display": longDisplay}}},
		)
		e.setMaxMsgSize(t, 900)
		r := e.do("PATCH", "/Groups/"+gid, body)
		e.setMaxMsgSize(t, -1)
		want503(t, r, mayBePartial)
		if r := e.do("PATCH", "/Groups/"+gid, body); r.status != 204 {
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
		g := e.do("GET", "/Groups/"+gid, nil)
		if g.str("displayName") != "Partial patched" || len(g.body["members"].([]any)) != 1 {
			t.Fatalf("after the retry: %s", g.raw)
		}
	})

	t.Run("user DELETE refused after its memberships were closed", func(t *testing.T) {
		u3 := e.mustCreateUser("part3@example.com", map[string]any{"nickName": strings.Repeat("n", 600)})
		gid := e.do("POST", "/Groups", map[string]any{"displayName": "Partial delete", "members": []any{map[string]any{"value": u3}}}).str("id")
		e.setMaxMsgSize(t, 900) // membership records fit; the user's does not
		r := e.do("DELETE", "/Users/"+u3, nil)
		e.setMaxMsgSize(t, -1)
		want503(t, r, mayBePartial)
		if r := e.do("DELETE", "/Users/"+u3, nil); r.status != 204 {
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
		if ev := e.record(t, "acme.m."+gid+"."+u3); ev.GetMembership().GetMember() {
			t.Fatal("membership of the deleted user still open")
		}
	})
}
