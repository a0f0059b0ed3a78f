package applier

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

// A PATCH replaces the member's whole role list, so it must be computed from
// roles read just before it: after a rate-limit wait the member is read
// again, and a role a human added during the wait is kept.
func TestPatchAfterARateLimitWaitIsComputedFromAFreshRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tbl := discordemu.RealisticTable()
	for i := range tbl.Buckets {
		if tbl.Buckets[i].Name == "member_edit" {
			tbl.Buckets[i].Limit, tbl.Buckets[i].WindowSeconds = 1, 0.4 // one PATCH per 400 ms
		}
	}
	if err := e.emu.Admin().SetRateLimitTable(e.ctx, tbl); err != nil {
		t.Fatalf("rate-limit table: %v", err)
	}
	r := e.start(testConfig())
	e.putGroup("g-eng", "Engineering")
	for i := 5; i <= 6; i++ {
		e.putUser(fmtUser(i), member(i), true)
		e.putMember("g-eng", fmtUser(i), true)
	}
	e.waitRoles(member(5), roleEng, roleStaff)
	e.waitRoles(member(6), roleEng, roleStaff)
	e.waitIdle(testConfig().Durable)
	e.eventually("PATCH bucket free", 5*time.Second, func() (bool, string) {
		return r.svc.limiter.NextFree(Route{routeMemberEdit, guildID}) == 0, "bucket busy"
	})

	seq := e.emu.Recorder().NextSeq()
	// A rename: both members need two changes (a PATCH each). The first
	// PATCH empties the bucket, so the second member waits ~400 ms for it.
	e.putGroup("g-eng", "Design")
	recs, err := e.emu.Admin().WaitRequests(e.ctx, discordemu.RequestFilter{SinceSeq: seq, Route: "member_get"}, 2, 10*time.Second)
	if err != nil || len(recs) < 2 {
		t.Fatalf("wait for two member reads: %d, %v", len(recs), err)
	}
	waiting := recs[1].Params["user_id"]
	// Meanwhile a human gives that member the unmanaged Moderator role.
	if err := e.emu.Admin().SetMemberRoles(e.ctx, guildID, waiting, []string{roleEng, roleStaff, roleMod}); err != nil {
		t.Fatalf("hand edit: %v", err)
	}
	e.waitRoles(waiting, roleDesign, roleStaff, roleMod)
	if edits := e.emu.Recorder().Requests(discordemu.RequestFilter{SinceSeq: seq, UserID: waiting, Route: "member_edit"}); len(edits) != 1 {
		t.Errorf("%d PATCHes for the waiting member, want 1", len(edits))
	}
}

func TestLogLinesNameTheServiceOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var buf syncBuffer
	// As cmd/applier and the all-in-one do: the caller names the service.
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("service", "applier")
	r := e.startLogged(testConfig(), log)
	e.putUser("alice", memberAlice, true)
	e.waitState(r, "alice", StateInSync)
	e.eventually("a reconcile logged", 10*time.Second, func() (bool, string) {
		return strings.Contains(buf.String(), "member reconciled"), "no line yet"
	})
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(line, `"service":`); n != 1 {
			t.Errorf("line has %d service attributes, want 1: %s", n, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["service"] != "applier" {
			t.Errorf("line %s: service = %v (%v), want applier", line, m["service"], err)
		}
	}
}
