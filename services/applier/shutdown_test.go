package applier

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

func TestAReconcileStillRunningAtTheShutdownDeadlineIsCancelledAndRedelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := testConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	m := member(3)
	inFlight := e.delayFirstGet(m, 20_000) // answers long after the deadline
	a := e.start(cfg)
	e.putUser("u3", m, true)
	e.eventually("replica A's GET in flight", 10*time.Second, func() (bool, string) { return inFlight(), "not yet" })
	key := eventbus.StatusKey(tenantID, guildID, "u3")
	if en, err := a.svc.leases.Get(e.ctx, key); err != nil || string(en.Value()) != a.svc.id {
		t.Fatalf("replica A does not hold the member's lease while it reconciles: %v", err)
	}

	a.cancel()
	select {
	case <-a.done:
	case <-time.After(cfg.ShutdownTimeout + shutdownBackstop + 5*time.Second):
		t.Fatal("Run did not return after the shutdown deadline")
	}
	if a.err != nil {
		t.Errorf("Run: %v, want a clean stop (the in-flight reconcile cancelled at the deadline)", a.err)
	}
	// Nothing of A's work outlives Run: the lease was released before it returned.
	if en, err := a.svc.leases.Get(e.ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("after Run returned the member's lease is still there (%v, %v)", en, err)
	}
	if got := e.roles(m); len(got) != 0 {
		t.Fatalf("roles %v before any replica finished the reconcile", got)
	}
	// The message was not acked: the next replica gets it and converges the member.
	e.start(cfg)
	e.waitRoles(m, roleStaff)
}
