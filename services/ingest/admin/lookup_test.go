package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/services/ingest"
)

// putUser stores a user record and, when claim is set, ingest's userName claim.
func putUser(t *testing.T, js jetstream.JetStream, id, userName string, claim bool) {
	t.Helper()
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	ev := &eventv1.Event{TenantId: "dev", Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, Op: eventv1.Operation_OPERATION_CREATE,
		ResourceId: id, Version: 1, Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, UserName: userName, Active: true}}}
	if _, err := st.Put(ctx, eventbus.UserKey("dev", id), ev, 0); err != nil {
		t.Fatal(err)
	}
	if !claim {
		return
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ingest.UniqueBucket})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(map[string]string{"owner": id})
	if _, err := kv.Put(ctx, ingest.UserNameClaimKey("dev", userName), data); err != nil {
		t.Fatal(err)
	}
}

// TestLookup_AnyUserNameIsFound: userNames with dots, spaces, tabs, '*',
// '>', unicode or an '@' without a dot are looked up through the claim (a
// hash) or the scan — never as a raw key, never 400 or 503.
func TestLookup_AnyUserNameIsFound(t *testing.T) {
	t.Parallel()
	s, js, _ := newServerJS(t)
	ten := mustGet(s.deps.Tenants)
	names := []string{"john.smith", "Jane Doe", "tab\tname", "star*name", "gt>name", "zoë.ünïcode", "x@nodot", "a.b.c.>"}
	for i, n := range names {
		putUser(t, js, "id"+string(rune('a'+i)), n, i%2 == 0) // half with a claim, half found by the scan
	}
	for i, n := range names {
		t.Run(n, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			u, _, err := s.lookup(ctx, ten, strings.ToUpper(n))
			if err != nil {
				t.Fatalf("lookup(%q): %v", n, err)
			}
			if want := "id" + string(rune('a'+i)); u.ID != want {
				t.Fatalf("lookup(%q) = %s, want %s", n, u.ID, want)
			}
		})
	}
}

// TestAPI_LongUserDoesNotBreakTheConnection: a 5,000-character user made
// NATS close the connection shared by the whole all-in-one; now it is a 400
// and the next lookup still works.
func TestAPI_LongUserDoesNotBreakTheConnection(t *testing.T) {
	t.Parallel()
	s, js, hs := newServerJS(t)
	putUser(t, js, "u1", "alice", true)
	get := func(q string) (int, string) {
		req, _ := http.NewRequest("GET", hs.URL+"/admin/api/v1/status?user="+url.QueryEscape(q), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, q := range []string{strings.Repeat("a", 5000), strings.Repeat("a", 5000) + "@x", strings.Repeat("a.", 2500)} {
		if code, body := get(q); code != http.StatusBadRequest {
			t.Fatalf("status of a %d-char user: %d %.200s, want 400", len(q), code, body)
		}
	}
	if !js.Conn().IsConnected() {
		t.Fatalf("NATS connection %v after the long lookups", js.Conn().Status())
	}
	u, _, err := s.lookup(context.Background(), mustGet(s.deps.Tenants), "alice")
	if err != nil || u.ID != "u1" {
		t.Fatalf("lookup after the long ones: %+v %v", u, err)
	}
}

// TestJSON_UserAndGroupsCarryEveryDocumentedField: `-o json` fields are
// present when empty (externalId, discordUserId, trace ids).
func TestJSON_UserAndGroupsCarryEveryDocumentedField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v      any
		fields []string
	}{
		{UserView{ID: "u"}, []string{"id", "userName", "externalId", "active", "deleted", "discordUserId", "version", "lastChange", "lastOp", "lastTraceId"}},
		{GroupView{ID: "g"}, []string{"id", "displayName", "externalId", "membershipTraceId"}},
		{GuildRulesApply{Guild: "1"}, []string{"guild", "preview", "applied", "version"}},
	} {
		data, _ := json.Marshal(tc.v)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, f := range tc.fields {
			if _, ok := m[f]; !ok {
				t.Errorf("%T: field %q missing in %s", tc.v, f, data)
			}
		}
	}
}
