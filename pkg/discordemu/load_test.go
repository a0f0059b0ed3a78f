package discordemu

import (
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// TestLoad_200MemberUpdatesRealistic drives 200 PATCH member updates through
// discordgo against the realistic profile at time_scale 0.02 and checks that the
// recorder agrees with the table: no bucket was exceeded and the throughput was
// bounded by 10 per scaled 10 s.
func TestLoad_200MemberUpdatesRealistic(t *testing.T) {
	t.Parallel()
	const scale = 0.02
	e := newTestEmu(t, func(c *Config) { c.TimeScale = scale })
	s := session(t, e, tToken)
	members := []string{tAlice, tBob}
	start := time.Now()
	for i := 0; i < 200; i++ {
		nick := "n" + string(rune('a'+i%26))
		uid := members[i%len(members)]
		if _, err := s.GuildMemberEdit(tGuild, uid, &discordgo.GuildMemberParams{Nick: nick}); err != nil {
			t.Fatalf("update %d: %v", i+1, err)
		}
	}
	elapsed := time.Since(start)
	rec := e.Recorder()
	rec.AssertNoRateLimits(t)
	rec.AssertNoInvalidRequests(t)
	rec.AssertMaxGlobalRate(t, 50)
	if n := rec.Calls("member_edit"); n != 200 {
		t.Fatalf("recorded %d member_edit calls", n)
	}
	m := rec.Metrics()
	b := m.Buckets["bot:"+tApp+"|member_edit|"+tGuild]
	if b == nil || b.Requests != 200 || b.RateLimited != 0 || b.ArrivedAtZero != 0 || b.MaxInFlight != 1 {
		t.Fatalf("bucket metrics %+v", b)
	}
	// 10 requests are free; the other 190 need 19 scaled windows of 10 s.
	if min := time.Duration(19 * 10 * scale * float64(time.Second) * 0.95); elapsed < min {
		t.Fatalf("200 updates took %v, faster than the table allows (%v)", elapsed, min)
	}
	for _, r := range rec.Requests(RequestFilter{Route: "member_edit"}) {
		if r.Bucket == nil || r.Bucket.RemainingAfter < 0 || r.Bucket.Limit != 10 {
			t.Fatalf("bucket record %+v", r.Bucket)
		}
	}
}

// TestLoad_RawClientIgnoringHeaders shows 429s exactly where the table predicts.
func TestLoad_RawClientIgnoringHeaders(t *testing.T) {
	t.Parallel()
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	e := newTestEmu(t, func(c *Config) { c.Clock = clk })
	for i := 0; i < 15; i++ {
		res, body := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "application/json", `{"nick":"x"}`, nil)
		want := 200
		if i >= 10 {
			want = 429
		}
		if res.StatusCode != want {
			t.Fatalf("request %d: %d %s", i+1, res.StatusCode, body)
		}
	}
	clk.Advance(time.Second) // one token refills (10 per 10 s)
	if res, _ := raw(t, e, "PATCH", "/api/v9/guilds/"+tGuild+"/members/"+tAlice, "Bot "+tToken, "application/json", `{}`, nil); res.StatusCode != 200 {
		t.Fatalf("after refill: %d", res.StatusCode)
	}
	m := e.Recorder().Metrics()
	id := m.Identities["bot:"+tApp]
	b := m.Buckets["bot:"+tApp+"|member_edit|"+tGuild]
	if id.RateLimitsByScope["user"] != 5 || id.Invalid != 5 || b.RateLimited != 5 || b.ArrivedAtZero != 5 {
		t.Fatalf("metrics identity %+v bucket %+v", id, b)
	}
}
