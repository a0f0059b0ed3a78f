package applier

import (
	"testing"
	"time"

	"github.com/scimcord/scimcord/pkg/discordemu"
)

func TestOneSlowCallDoesNotHoldOtherCallsOfItsRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.ShutdownTimeout = time.Second // alice's slow GET is still out when the test ends
	r := e.start(cfg)
	// Warm up: the guild is known and the member route learned.
	e.putUser("bob", member(2), true)
	e.waitRoles(member(2), roleStaff)
	aliceGet := e.delayFirstGet(memberAlice, 3000)
	e.putUser("alice", memberAlice, true)
	e.eventually("alice's slow GET in flight", 10*time.Second, func() (bool, string) { return aliceGet(), "not yet" })
	e.putUser("carol", member(3), true)
	e.waitRoles(member(3), roleStaff)
	// Carol converged while alice's GET (same route, same guild) was still
	// out: discordgo's per-route bucket lock does not serialise calls.
	if recs := e.emu.Recorder().Requests(discordemu.RequestFilter{Route: "member_get", UserID: memberAlice}); len(recs) != 0 {
		t.Errorf("alice's GET finished (%.0f ms) before carol converged: carol's calls waited behind it", recs[0].DurationMS)
	}
	if got := e.roles(memberAlice); len(got) != 0 {
		t.Errorf("alice has %v before her slow GET answered", got)
	}
	_ = r
}
