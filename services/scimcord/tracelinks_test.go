package scimcord_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scimcord/scimcord/pkg/discordemu"
	"github.com/scimcord/scimcord/services/scimcord"
)

// Changes to one member that arrive while its reconcile is running are
// applied by one later reconcile (coalesced). Each IdP request keeps its own
// trace; the applier.process span of a coalesced message says so
// (scimcord.coalesced) and the span of the run that applied it links to it,
// so an SRE following either trace finds the Discord calls.
func TestTrace_CoalescedChangesAreLinkedToTheRunThatAppliedThem(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	sys, _ := startWith(t, func(c *scimcord.Config) { c.Telemetry.SpanProcessors = []sdktrace.SpanProcessor{rec} })
	emu := sys.Emulator()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	user, _ := scim(t, sys, "POST", "/Users", userBody("links@example.com", member1), 201)
	uid := user["id"].(string)
	waitRoles(t, emu, member1, roleStaff)
	group := func(name string) string {
		g, _ := scim(t, sys, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": name}, 201)
		return g["id"].(string)
	}
	eng, design := group("Engineering"), group("Design")

	// The next read of the member is slow: the reconcile of the first
	// change is still running when the next two arrive.
	fid, err := emu.Admin().AddFault(ctx, discordemu.FaultRule{
		Match:  discordemu.FaultMatch{Route: discordemu.StringList{"member_get"}, UserID: member1},
		When:   discordemu.FaultWhen{Nth: []int{1}},
		Action: discordemu.FaultAction{Type: "delay", MS: 1500},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, first := scim(t, sys, "PATCH", "/Groups/"+eng, patchOp("add", "members", []map[string]any{{"value": uid}}), 200, 204)
	deadline := time.Now().Add(20 * time.Second)
	for fired := false; !fired; {
		fs, err := emu.Admin().Faults(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			fired = fired || (f.ID == fid && f.Fired > 0)
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow member read never started")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	_, second := scim(t, sys, "PATCH", "/Groups/"+design, patchOp("add", "members", []map[string]any{{"value": uid}}), 200, 204)
	_, third := scim(t, sys, "PATCH", "/Users/"+uid, patchOp("replace", "displayName", "Links Example"), 200, 204)
	waitRoles(t, emu, member1, roleStaff, roleEng, roleDesign)

	// Every request's trace has its applier.process span; a coalesced one
	// is linked from the processing span of the run that covered it.
	procs := map[string]sdktrace.ReadOnlySpan{}
	for _, tr := range []string{first, second, third} {
		ss := waitTrace(t, rec, tr, hasSpan("scimcord-applier", "applier.process"))
		procs[tr] = ss.find("scimcord-applier", "applier.process")[0]
	}
	coalesced := 0
	for _, tr := range []string{second, third} {
		p := procs[tr]
		if v, ok := attr(p, "scimcord.coalesced"); !ok || !v.AsBool() {
			continue // applied by its own reconcile
		}
		coalesced++
		linked := false
		for _, s := range rec.Ended() {
			for _, l := range s.Links() {
				if l.SpanContext.SpanID() == p.SpanContext().SpanID() && s.SpanContext().TraceID() != p.SpanContext().TraceID() {
					linked = linked || strings.HasPrefix(s.Name(), "applier.")
				}
			}
		}
		if !linked {
			t.Errorf("trace %s: its message was coalesced, but no applier span of another trace links to it", tr)
		}
	}
	if coalesced == 0 {
		t.Fatalf("neither later change was coalesced: the test did not exercise coalescing (%d Discord calls for the member)",
			len(emu.Recorder().Requests(discordemu.RequestFilter{UserID: member1})))
	}
	// The coalesced changes cost no Discord write of their own: after the
	// slow read, one call applied what all three asked for at most twice.
	writes := 0
	for _, r := range emu.Recorder().Requests(discordemu.RequestFilter{UserID: member1}) {
		if r.Method != "GET" && r.Outcome.Status < 300 {
			writes++
		}
	}
	if writes > 3 {
		t.Errorf("%d Discord writes for the member, want at most 3 (Staff, then the coalesced changes)", writes)
	}
}
