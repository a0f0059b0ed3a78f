package applier

import (
	"encoding/json"
	"testing"
)

// keysOf marshals v and returns its top-level object.
func keysOf(t *testing.T, v any) map[string]json.RawMessage {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return m
}

// TestAdminJSON_EveryDocumentedFieldIsPresent: `-o json` (the operator
// replies unchanged) carries every field the README lists, empty ones too;
// lists are [] rather than absent.
func TestAdminJSON_EveryDocumentedFieldIsPresent(t *testing.T) {
	t.Parallel()
	statusFields := []string{"tenant", "guild", "user", "discord_user_id", "state", "code", "detail", "action", "roles", "trace_id", "time"}
	for _, tc := range []struct {
		name   string
		v      any
		fields []string
		lists  []string
	}{
		{"status of a member without a sync status", AdminMemberStatus{Guild: "g"},
			[]string{"guild", "status", "discord_user_id", "in_guild", "desired_roles", "actual_roles", "managed_roles", "to_add", "to_remove", "plan_error"},
			[]string{"desired_roles", "actual_roles", "managed_roles", "to_add", "to_remove"}},
		{"the status inside", statusOut(Status{State: StateInSync}), statusFields, []string{"roles"}},
		{"a dead letter", deadLetterJSON{statusJSON: statusOut(Status{State: StateFailed})}, append([]string{"op", "http_status"}, statusFields...), nil},
		{"a replay without errors", AdminReplayResult{Errors: []string{}}, []string{"replayed", "errors"}, []string{"errors"}},
		{"a drift change", PlannedChange{DiscordUserID: "1", Op: "none"}, []string{"user", "discord_user_id", "op", "add", "remove", "done", "error"}, []string{"add", "remove"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := keysOf(t, tc.v)
			for _, f := range tc.fields {
				if _, ok := m[f]; !ok {
					t.Errorf("field %q missing: %v", f, m)
				}
			}
			for _, f := range tc.lists {
				if string(m[f]) != "[]" {
					t.Errorf("list %q = %s, want []", f, m[f])
				}
			}
		})
	}
	// The member status with a status nests every status field.
	st := Status{State: StatePending}
	var nested struct {
		Status map[string]json.RawMessage `json:"status"`
	}
	data, _ := json.Marshal(AdminMemberStatus{Status: &st})
	if err := json.Unmarshal(data, &nested); err != nil {
		t.Fatal(err)
	}
	for _, f := range statusFields {
		if _, ok := nested.Status[f]; !ok {
			t.Errorf("status field %q missing: %s", f, data)
		}
	}
}
