package applier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestMappingRefusalsAreAFailedStatusAndTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  codes.Code
		state State
	}{
		{codes.InvalidArgument, StateFailed},
		{codes.ResourceExhausted, StateFailed}, // e.g. a request over mapping's message size limit
		{codes.OutOfRange, StateFailed},
		{codes.Unimplemented, StateFailed},
		{codes.Unavailable, StateRetrying},
	}
	for _, tc := range tests {
		t.Run(tc.code.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.mapping.mu.Lock()
			e.mapping.refuseCode = tc.code
			e.mapping.mu.Unlock()
			r := e.start(testConfig())
			e.putUser("carol", member(3), true)
			st := e.waitState(r, "carol", tc.state)
			calls := func() int { e.mapping.mu.Lock(); defer e.mapping.mu.Unlock(); return e.mapping.users["carol"] }
			if tc.state == StateRetrying {
				e.eventually("retries with backoff", 10*time.Second, func() (bool, string) {
					return calls() >= 3, fmt.Sprintf("%d calls", calls())
				})
				return
			}
			if !strings.Contains(st.Detail, tc.code.String()) {
				t.Errorf("status detail %q does not name the code %s", st.Detail, tc.code)
			}
			e.waitIdle(testConfig().Durable) // acked, not redelivered forever
			dls, err := r.svc.DeadLetters(e.ctx)
			if err != nil || len(dls) != 1 || dls[0].User != "carol" {
				t.Errorf("dead letters = %+v, %v; want carol", dls, err)
			}
			if n := calls(); n != 1 {
				t.Errorf("mapping was asked %d times, want once (no retry loop)", n)
			}
		})
	}
}

// hugeUser is a SCIM user whose stored JSON is about size bytes: one photo
// as a data URI (big=true) or many small email addresses.
func hugeUser(id string, size int, oneBigValue bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"id":%q,"userName":"%s@example.com","active":true,"title":"Engineer",`, id, id)
	if oneBigValue {
		fmt.Fprintf(&b, `"photos":[{"type":"photo","value":"data:image/png;base64,%s"}]}`, strings.Repeat("A", size))
		return b.Bytes()
	}
	b.WriteString(`"emails":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"value":"alias%d@example.com"}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func TestUserOverTheMappingMessageLimitIsResolvedWithoutItsLongValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var seen []byte
	e.mapping.onUser = func(userJSON []byte) { seen = userJSON }
	r := e.start(testConfig())
	// 5 MB: over gRPC's default 4 MiB, which mapping's server keeps.
	e.putUserSnapshot("photo", member(4), true, hugeUser("photo", 5_000_000, true))
	e.waitRoles(member(4), roleStaff)
	e.waitState(r, "photo", StateInSync)
	e.mapping.mu.Lock()
	got := seen
	e.mapping.mu.Unlock()
	var u map[string]any
	if err := json.Unmarshal(got, &u); err != nil {
		t.Fatalf("mapping got invalid user JSON: %v", err)
	}
	if len(got) > maxUserJSON || u["title"] != "Engineer" || u["userName"] != "photo@example.com" {
		t.Errorf("mapping got %d bytes %.200s; want the user without the photo's data URI", len(got), got)
	}
}

func TestUserTooLargeForMappingFailsOnceWithADeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	e.putUser("alice", memberAlice, true)
	e.putMember("g-eng", "alice", true)
	e.putUserSnapshot("aliases", member(5), true, hugeUser("aliases", 5_000_000, false))
	e.putMember("g-eng", "aliases", true)
	st := e.waitState(r, "aliases", StateFailed)
	if !strings.Contains(st.Detail, "too large") {
		t.Errorf("status detail %q; want it to say the record is too large", st.Detail)
	}
	e.waitRoles(memberAlice, roleEng, roleStaff) // the other member of the group is not held up
	// A group record fans out to both: alice is applied, "aliases" fails again, permanently.
	e.putGroup("g-eng", "Design")
	e.waitRoles(memberAlice, roleDesign, roleStaff)
	e.waitIdle(testConfig().Durable)
	dls, err := r.svc.DeadLetters(e.ctx)
	if err != nil || len(dls) != 1 || dls[0].User != "aliases" {
		t.Errorf("dead letters = %+v, %v; want aliases", dls, err)
	}
	e.mapping.mu.Lock()
	n := e.mapping.users["aliases"]
	e.mapping.mu.Unlock()
	if n != 0 {
		t.Errorf("mapping was sent the oversized request %d times, want 0 (refused before sending)", n)
	}
}

func TestMappingUserJSONDropsOnlyLongValuesOfLargeUsers(t *testing.T) {
	t.Parallel()
	small := []byte(`{"userName":"a","photos":[{"value":"` + strings.Repeat("x", 5000) + `"}]}`)
	if out, dropped, err := mappingUserJSON(small); err != nil || dropped != 0 || !bytes.Equal(out, small) {
		t.Errorf("a user under the limit must be sent as is; got %d bytes, %d dropped, %v", len(out), dropped, err)
	}
	big := hugeUser("b", 2<<20, true)
	out, dropped, err := mappingUserJSON(big)
	if err != nil || dropped != 1 || bytes.Contains(out, []byte("data:image")) || !bytes.Contains(out, []byte(`"title":"Engineer"`)) {
		t.Errorf("mappingUserJSON(photo) = %.100s, %d, %v; want the photo dropped and the rest kept", out, dropped, err)
	}
	if _, _, err := mappingUserJSON(hugeUser("c", 2<<20, false)); !errors.Is(err, ErrMappingRequestTooLarge) {
		t.Errorf("many small values: err = %v, want ErrMappingRequestTooLarge", err)
	}
	if _, _, err := mappingUserJSON(bytes.Repeat([]byte("{"), 2<<20)); !errors.Is(err, ErrMappingRequestTooLarge) {
		t.Errorf("invalid JSON: err = %v, want ErrMappingRequestTooLarge", err)
	}
}

func FuzzMappingUserJSON(f *testing.F) {
	f.Add([]byte(`{"a":"b","c":[1,"d",{"e":null}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Make it large enough to be trimmed.
		doc := append([]byte(`{"pad":"`+strings.Repeat("p", maxUserJSON)+`","x":`), data...)
		doc = append(doc, '}')
		out, _, err := mappingUserJSON(doc)
		if err == nil && (len(out) > maxUserJSON || !json.Valid(out)) {
			t.Fatalf("mappingUserJSON gave %d bytes, valid=%v", len(out), json.Valid(out))
		}
	})
}

func TestGroupFanOutRetriesOnlyTheFailingMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	for i := 1; i <= 4; i++ {
		e.putUser(fmtUser(i), member(i), true)
		e.putMember("g-eng", fmtUser(i), true)
	}
	for i := 1; i <= 4; i++ {
		e.waitRoles(member(i), roleEng, roleStaff)
	}
	e.waitIdle(testConfig().Durable)
	// Member 4 cannot be read from Discord any more (5xx until further notice).
	id, err := e.emu.Admin().AddFault(e.ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_get"}, UserID: member(4)},
		Action: discordemu.FaultAction{Type: "status", Status: 503},
	})
	if err != nil {
		t.Fatalf("add fault: %v", err)
	}
	seq := e.emu.Recorder().NextSeq()
	e.putGroup("g-eng", "Design") // a group record: fans out to all four
	for i := 1; i <= 3; i++ {
		e.waitRoles(member(i), roleDesign, roleStaff)
	}
	e.eventually("member 4 retried several times", 15*time.Second, func() (bool, string) {
		n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: member(4), Route: "member_get"}))
		return n >= 4, fmt.Sprintf("%d GETs of member 4", n)
	})
	e.waitIdle(testConfig().Durable) // the group message is acked; member 4 is its own work item
	for i := 1; i <= 3; i++ {
		if n := len(e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: member(i), Route: "member_get"})); n != 1 {
			t.Errorf("member %d was read %d times while member 4 failed, want once", i, n)
		}
	}
	if st, err := r.svc.Status(e.ctx, tenantID, guildID, "u4"); err != nil || st.State != StateRetrying {
		t.Errorf("status of member 4 = %+v, %v; want retrying", st, err)
	}
	if err := e.emu.Admin().DeleteFault(e.ctx, id); err != nil {
		t.Fatalf("delete fault: %v", err)
	}
	e.waitRoles(member(4), roleDesign, roleStaff)
	e.waitState(r, "u4", StateInSync)
}
