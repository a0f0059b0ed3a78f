package ingest_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// onLaggingReplica makes a write on replica 0 (before), then sends write to
// replica 1 while replica 1's view has not seen the first write yet. A
// correct replica 1 waits for its view to catch up before it decides
// anything; it must not answer from its stale view.
func (e *env) onLaggingReplica(t *testing.T, before func(), write func() resp) resp {
	t.Helper()
	release := e.svcs[1].HoldViewForTest()
	defer release()
	before()
	done := make(chan resp, 1)
	go func() { done <- write() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case r := <-done:
			return r // answered without waiting for its view
		default:
		}
		if e.svcs[1].ViewWaitersForTest() > 0 {
			release()
			return <-done
		}
		if time.Now().After(deadline) {
			t.Fatal("replica 1 neither answered nor waited for its view")
		}
		time.Sleep(time.Millisecond)
	}
}

// memberRecord reads the membership record of (group, user) from the bucket.
func (e *env) memberRecord(t *testing.T, gid, uid string) (exists, member bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, "scim")
	if err != nil {
		t.Fatal(err)
	}
	en, err := kv.Get(ctx, "acme.m."+gid+"."+uid)
	if err != nil {
		return false, false
	}
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(en.Value(), ev); err != nil {
		t.Fatal(err)
	}
	return true, ev.GetMembership().GetMember()
}

// TestWritesOnALaggingReplicaLoseNothing: a change acknowledged by one
// replica and then a change sent to another replica whose view has not
// caught up yet — the second must be decided on the newest state (property
// 1: every acknowledged change is stored). Deterministic: replica 1's view
// is held behind the stream until replica 1 waits for it.
func TestWritesOnALaggingReplicaLoseNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	addBody := func(uid string) any {
		return patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": uid}}})
	}
	rmBody := func(uid string) any {
		return patchBody(map[string]any{"op": "remove", "path": `members[value eq "` + uid + `"]`})
	}
	ok := func(t *testing.T, r resp) {
		t.Helper()
		if r.status/100 != 2 {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
	}
	members := func(t *testing.T, gid string) []any {
		t.Helper()
		var out []any
		for i := range 2 {
			g := e.doOn(i, tokenA, "GET", "/Groups/"+gid, nil, nil)
			m, _ := g.body["members"].([]any)
			if i > 0 && len(m) != len(out) {
				t.Fatalf("replicas disagree: %d vs %d members", len(out), len(m))
			}
			out = m
		}
		return out
	}
	cases := []struct {
		name        string
		withMember  bool // the group starts with the user as a member
		before      func(gid, uid string) resp
		write       func(gid, uid string) resp
		wantMember  bool
		wantName    string // "" = the group's name is not checked
		checkRecord bool   // read the membership record from the bucket
	}{
		{"remove on a replica that has not seen the add", false,
			func(gid, uid string) resp { return e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil) },
			func(gid, uid string) resp { return e.doOn(1, tokenA, "PATCH", "/Groups/"+gid, rmBody(uid), nil) },
			false, "", true},
		{"add on a replica that has not seen the remove", true,
			func(gid, uid string) resp { return e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, rmBody(uid), nil) },
			func(gid, uid string) resp { return e.doOn(1, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil) },
			true, "", true},
		{"rename back on a replica that has not seen the rename", false,
			func(gid, uid string) resp {
				return e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Renamed " + uid}), nil)
			},
			func(gid, uid string) resp {
				return e.doOn(1, tokenA, "PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Lag " + uid}), nil)
			},
			false, "Lag", false},
		{"PUT without members on a replica that has not seen the add", false,
			func(gid, uid string) resp { return e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil) },
			func(gid, uid string) resp {
				return e.doOn(1, tokenA, "PUT", "/Groups/"+gid, map[string]any{"displayName": "Lag " + uid, "members": []any{}}, nil)
			},
			false, "", true},
		{"replace members on a replica that has not seen the add", false,
			func(gid, uid string) resp { return e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil) },
			func(gid, _ string) resp {
				return e.doOn(1, tokenA, "PATCH", "/Groups/"+gid, patchBody(map[string]any{"op": "replace", "path": "members", "value": []any{}}), nil)
			},
			false, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uid := e.mustCreateUser("lag-" + time.Now().Format("150405.000000000") + "@example.com")
			g := e.do("POST", "/Groups", map[string]any{"displayName": "Lag " + uid})
			gid := g.str("id")
			if tc.withMember {
				ok(t, e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil))
			}
			// Replica 1 has seen the starting state.
			if r := e.doOn(1, tokenA, "GET", "/Groups/"+gid, nil, nil); r.status != 200 {
				t.Fatalf("replica 1: %d", r.status)
			}
			r := e.onLaggingReplica(t, func() { ok(t, tc.before(gid, uid)) }, func() resp { return tc.write(gid, uid) })
			ok(t, r)
			m := members(t, gid)
			if got := len(m) == 1; got != tc.wantMember {
				t.Fatalf("member after the second change: %v, want %v (%v)", got, tc.wantMember, m)
			}
			if tc.checkRecord {
				if exists, member := e.memberRecord(t, gid, uid); exists && member != tc.wantMember {
					t.Fatalf("stored membership record: member=%v, want %v", member, tc.wantMember)
				}
			}
			if tc.wantName != "" {
				if g := e.doOn(0, tokenA, "GET", "/Groups/"+gid, nil, nil); g.str("displayName") != tc.wantName+" "+uid {
					t.Fatalf("displayName %q, want %q", g.str("displayName"), tc.wantName+" "+uid)
				}
			}
		})
	}
	t.Run("deleting a group closes a membership the replica has not seen", func(t *testing.T) {
		uid := e.mustCreateUser("lag-del-group@example.com")
		gid := e.do("POST", "/Groups", map[string]any{"displayName": "Lag delete group"}).str("id")
		e.doOn(1, tokenA, "GET", "/Groups/"+gid, nil, nil)
		ok(t, e.onLaggingReplica(t, func() { ok(t, e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil)) },
			func() resp { return e.doOn(1, tokenA, "DELETE", "/Groups/"+gid, nil, nil) }))
		if _, member := e.memberRecord(t, gid, uid); member {
			t.Fatal("membership of the deleted group is still open in the bucket")
		}
	})
	t.Run("deleting a user closes a membership the replica has not seen", func(t *testing.T) {
		uid := e.mustCreateUser("lag-del-user@example.com")
		gid := e.do("POST", "/Groups", map[string]any{"displayName": "Lag delete user"}).str("id")
		e.doOn(1, tokenA, "GET", "/Groups/"+gid, nil, nil)
		ok(t, e.onLaggingReplica(t, func() { ok(t, e.doOn(0, tokenA, "PATCH", "/Groups/"+gid, addBody(uid), nil)) },
			func() resp { return e.doOn(1, tokenA, "DELETE", "/Users/"+uid, nil, nil) }))
		if _, member := e.memberRecord(t, gid, uid); member {
			t.Fatal("membership of the deleted user is still open in the bucket")
		}
	})
}
