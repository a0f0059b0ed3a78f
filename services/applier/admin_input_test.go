package applier

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// adminAsk sends one operator request to the running applier's responder.
func (e *env) adminAsk(op string, req AdminRequest) adminReplyRaw {
	e.t.Helper()
	data, _ := json.Marshal(req)
	var msg *nats.Msg
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err = e.nc.Request(AdminSubjectPrefix+op, data, 10*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll until the responder is subscribed
	}
	if err != nil {
		e.t.Fatalf("admin %s: %v", op, err)
	}
	var rep adminReplyRaw
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		e.t.Fatalf("admin %s reply %s: %v", op, msg.Data, err)
	}
	return rep
}

type adminReplyRaw struct {
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}

// TestAdmin_StatusRefusesAUserThatIsNotAKeyToken: the user of a status
// request becomes a KV key (a subject); a 5,000-character one used to make
// NATS close the shared connection. It is a bad request, and the connection
// stays usable.
func TestAdmin_StatusRefusesAUserThatIsNotAKeyToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(testConfig())
	for _, u := range []string{strings.Repeat("a", 5000), "a.b", "a b", ">"} {
		rep := e.adminAsk(AdminOpStatus, AdminRequest{Tenant: tenantID, User: u})
		if !strings.Contains(rep.Error, "bad request") {
			t.Fatalf("status of %.20q…: reply %+v, want a bad request", u, rep)
		}
	}
	if !e.nc.IsConnected() {
		t.Fatalf("NATS connection %v after the bad requests", e.nc.Status())
	}
	if rep := e.adminAsk(AdminOpStatus, AdminRequest{Tenant: tenantID, User: "u1"}); rep.Error != "" {
		t.Fatalf("status of u1 after the bad requests: %+v", rep)
	}
}

// TestAdmin_BoundedWorkersAnswerBusy: the responder runs at most
// adminWorkers requests at once; one more is answered "busy" at once
// instead of starting another goroutine.
func TestAdmin_BoundedWorkersAnswerBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(testConfig())
	if rep := e.adminAsk(AdminOpOverview, AdminRequest{Tenant: tenantID}); rep.Error != "" {
		t.Fatalf("overview: %+v", rep)
	}
	slots := r.svc.admin.workerSlots()
	for range cap(slots) {
		slots <- struct{}{} // every worker busy
	}
	if rep := e.adminAsk(AdminOpOverview, AdminRequest{Tenant: tenantID}); !strings.Contains(rep.Error, "busy") {
		t.Fatalf("overview with every worker busy: %+v, want busy", rep)
	}
	for range cap(slots) {
		<-slots
	}
	if rep := e.adminAsk(AdminOpOverview, AdminRequest{Tenant: tenantID}); rep.Error != "" {
		t.Fatalf("overview after the burst: %+v", rep)
	}
}
