package eventbus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/pkg/natsembed"
)

func startJS(t *testing.T) (*natsembed.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbus.EnsureBuckets(ctx, js, eventbus.BucketConfig{}); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func userEvent(id string, active bool) *eventv1.Event {
	return &eventv1.Event{TenantId: "t1", Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, Op: eventv1.Operation_OPERATION_CREATE,
		ResourceId: id, Version: 1, Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, Active: active}}}
}

func TestStore_PutIsCompareAndSet(t *testing.T) {
	t.Parallel()
	_, js := startJS(t)
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	key := eventbus.UserKey("t1", "u1")
	rev, err := st.Put(ctx, key, userEvent("u1", true), 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := st.Put(ctx, key, userEvent("u1", true), 0); !errors.Is(err, eventbus.ErrConflict) {
		t.Fatalf("second create: got %v, want ErrConflict", err)
	}
	rev2, err := st.Put(ctx, key, userEvent("u1", false), rev)
	if err != nil {
		t.Fatalf("update at current rev: %v", err)
	}
	if _, err := st.Put(ctx, key, userEvent("u1", true), rev); !errors.Is(err, eventbus.ErrConflict) {
		t.Fatalf("update at stale rev: got %v, want ErrConflict", err)
	}
	got, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != rev2 || got.Event.GetUser().GetActive() {
		t.Fatalf("got rev %d active %v, want rev %d inactive", got.Revision, got.Event.GetUser().GetActive(), rev2)
	}
	if _, err := st.Get(ctx, eventbus.UserKey("t1", "nope")); !errors.Is(err, eventbus.ErrNotFound) {
		t.Fatalf("missing key: got %v, want ErrNotFound", err)
	}
}

func TestStore_PutWithNATSDownFailsAndWritesNothing(t *testing.T) {
	t.Parallel()
	srv, js := startJS(t)
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := st.Put(pctx, eventbus.UserKey("t1", "u1"), userEvent("u1", true), 0); !errors.Is(err, eventbus.ErrUnavailable) {
		t.Fatalf("put with NATS down: got %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := st.Get(ctx, eventbus.UserKey("t1", "u1"))
		if errors.Is(err, eventbus.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: got %v, want ErrNotFound (nothing written)", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval while the client reconnects
	}
}

func TestStore_ListKeysByFilter(t *testing.T) {
	t.Parallel()
	_, js := startJS(t)
	ctx := context.Background()
	st, _ := eventbus.OpenStore(ctx, js)
	for _, k := range []string{eventbus.MemberKey("t1", "g1", "u1"), eventbus.MemberKey("t1", "g1", "u2"), eventbus.MemberKey("t1", "g2", "u1")} {
		if _, err := st.Put(ctx, k, &eventv1.Event{TenantId: "t1"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, filter string
		want         int
	}{
		{"members of one group", eventbus.GroupMembersFilter("t1", "g1"), 2},
		{"groups of one user", eventbus.UserGroupsFilter("t1", "u1"), 2},
		{"no match", eventbus.GroupMembersFilter("t1", "g9"), 0},
	} {
		keys, err := st.ListKeys(ctx, tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(keys) != tc.want {
			t.Errorf("%s: got %v, want %d keys", tc.name, keys, tc.want)
		}
	}
}

func TestConsume_MapsHandlerResultsToAcks(t *testing.T) {
	t.Parallel()
	_, js := startJS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, _ := eventbus.OpenStore(ctx, js)
	for _, id := range []string{"ok", "retry", "perm"} {
		if _, err := st.Put(ctx, eventbus.UserKey("t1", id), userEvent(id, true), 0); err != nil {
			t.Fatal(err)
		}
	}
	var okCount, retryCount, permCount, terms atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- eventbus.Consume(ctx, js, eventbus.ConsumeConfig{
			Stream: eventbus.ResourceStream, Durable: "test", Workers: 2,
			OnTerm: func(context.Context, jetstream.Msg, error) { terms.Add(1) },
		}, func(ctx context.Context, msg jetstream.Msg) error {
			k, err := eventbus.ParseKey(msg.Subject())
			if err != nil {
				return eventbus.Permanent(err)
			}
			switch k.ID {
			case "retry":
				if retryCount.Add(1) == 1 {
					return eventbus.Retry(errors.New("busy"), 10*time.Millisecond)
				}
			case "perm":
				permCount.Add(1)
				return eventbus.Permanent(errors.New("hierarchy"))
			default:
				okCount.Add(1)
			}
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for retryCount.Load() < 2 || terms.Load() < 1 || okCount.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("ok=%d retry=%d terms=%d", okCount.Load(), retryCount.Load(), terms.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if permCount.Load() != 1 {
		t.Fatalf("permanent error delivered %d times, want 1", permCount.Load())
	}
}

// A key longer than the NATS control line made the server close the shared
// connection (every service in the all-in-one broke for good); the store
// refuses such keys before sending anything.
func TestStore_RefusesOverlongAndInvalidKeysAndTheConnectionStaysUsable(t *testing.T) {
	t.Parallel()
	_, js := startJS(t)
	ctx := context.Background()
	st, err := eventbus.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	long := eventbus.UserKey("t1", strings.Repeat("a", 5000))
	for _, tc := range []struct {
		name string
		key  string
	}{
		{"a 5,000-char key", long},
		{"a key with a space", "t1.u.john smith"},
		{"a key with a wildcard", "t1.u.*"},
		{"a key with an empty token", "t1.u..x"},
		{"an empty key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.Get(ctx, tc.key); !errors.Is(err, eventbus.ErrInvalidKey) || !errors.Is(err, eventbus.ErrNotFound) {
				t.Errorf("Get: got %v, want ErrInvalidKey and ErrNotFound", err)
			}
			if _, err := st.Put(ctx, tc.key, userEvent("x", true), 0); !errors.Is(err, eventbus.ErrInvalidKey) || errors.Is(err, eventbus.ErrUnavailable) {
				t.Errorf("Put: got %v, want ErrInvalidKey (not unavailable)", err)
			}
		})
	}
	if _, err := st.ListKeys(ctx, "t1.u."+strings.Repeat("b", 5000)); !errors.Is(err, eventbus.ErrInvalidKey) {
		t.Errorf("ListKeys of a 5,000-char filter: got %v, want ErrInvalidKey", err)
	}
	if _, err := st.Get(ctx, long); err != nil && len(err.Error()) > 300 {
		t.Errorf("the error echoes the whole key: %d bytes", len(err.Error()))
	}
	// The connection is still open and usable.
	if !js.Conn().IsConnected() {
		t.Fatalf("connection status %v after the refused keys", js.Conn().Status())
	}
	key := eventbus.UserKey("t1", "still-works")
	if _, err := st.Put(ctx, key, userEvent("still-works", true), 0); err != nil {
		t.Fatalf("put after the refused keys: %v", err)
	}
	if _, err := st.Get(ctx, key); err != nil {
		t.Fatalf("get after the refused keys: %v", err)
	}
	if keys, err := st.ListKeys(ctx, "t1.u.*"); err != nil || len(keys) != 1 {
		t.Fatalf("list after the refused keys: %v %v", keys, err)
	}
}

func TestValidToken_CapsLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"u1", true}, {strings.Repeat("a", eventbus.MaxTokenLen), true}, {strings.Repeat("a", eventbus.MaxTokenLen+1), false},
		{"a.b", false}, {"", false}, {"john smith", false}, {"*", false}, {">", false},
	} {
		if got := eventbus.ValidToken(tc.in); got != tc.want {
			t.Errorf("ValidToken(%.20q…) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestConsume_StopsWithinTheDrainTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		drain time.Duration
		// finish is whether the handler returns by itself after ctx ends.
		finish      bool
		wantHandled bool // the handler's context was not cancelled
	}{
		{name: "a message in flight when ctx ends is finished and acked", drain: 0, finish: true, wantHandled: true},
		{name: "a message in flight within the drain timeout is finished", drain: time.Minute, finish: true, wantHandled: true},
		{name: "a handler still running after the drain timeout is cancelled and its message redelivered", drain: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, js := startJS(t)
			bg, bgCancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer bgCancel()
			st, _ := eventbus.OpenStore(bg, js)
			if _, err := st.Put(bg, eventbus.UserKey("t1", "u1"), userEvent("u1", true), 0); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(bg)
			started, release := make(chan struct{}), make(chan struct{})
			var cancelled atomic.Bool
			done := make(chan error, 1)
			go func() {
				done <- eventbus.Consume(ctx, js, eventbus.ConsumeConfig{
					Stream: eventbus.ResourceStream, Durable: "drain", Workers: 1, DrainTimeout: tc.drain,
				}, func(hctx context.Context, _ jetstream.Msg) error {
					close(started)
					if tc.finish {
						<-release
					} else {
						<-hctx.Done()
					}
					if err := hctx.Err(); err != nil {
						cancelled.Store(true)
						return err
					}
					return nil
				})
			}()
			<-started
			cancel()
			if tc.finish {
				select {
				case err := <-done:
					t.Fatalf("Consume returned (%v) while a handler was still running", err)
				default:
				}
				close(release)
			}
			if err := <-done; err != nil {
				t.Fatalf("Consume: %v", err)
			}
			if cancelled.Load() == tc.wantHandled {
				t.Fatalf("handler context cancelled: %v, want %v", cancelled.Load(), !tc.wantHandled)
			}
			// Acked: a new consumer on the durable sees nothing; not acked: the message again.
			cons, err := js.Consumer(bg, eventbus.ResourceStream, "drain")
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				info, err := cons.Info(bg)
				if err != nil {
					t.Fatal(err)
				}
				acked := info.AckFloor.Stream >= 1
				if tc.wantHandled && acked && info.NumAckPending == 0 {
					return
				}
				if !tc.wantHandled && !acked && (info.NumRedelivered > 0 || info.NumAckPending > 0 || info.NumPending > 0) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("consumer state %+v (ack floor %+v), want acked=%v", info, info.AckFloor, tc.wantHandled)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
