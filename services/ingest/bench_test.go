package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
	"github.com/scimcord/scimcord/pkg/natsembed"
	"github.com/scimcord/scimcord/services/ingest"
)

const benchClients = 16

var benchHTTP = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}

func benchDo(b *testing.B, method, url string, body []byte) (int, []byte) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokenA)
	req.Header.Set("Content-Type", "application/scim+json")
	res, err := benchHTTP.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, data
}

// parallel runs n operations on benchClients goroutines and returns ops/s.
func parallel(n int, op func(i int)) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				op(i)
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// rawPublishRate is the baseline: JetStream publishes of size bytes, acked,
// from benchClients clients, on the same server and bucket stream.
func rawPublishRate(b *testing.B, js jetstream.JetStream, size, n int) float64 {
	payload := bytes.Repeat([]byte("x"), size)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	return parallel(n, func(i int) {
		if _, err := js.Publish(ctx, fmt.Sprintf("bench.raw.%d", i), payload); err != nil {
			b.Fatal(err)
		}
	})
}

func benchUserJSON(i int, run string) []byte {
	data, _ := json.Marshal(userBody(fmt.Sprintf("bench%d.%s@example.com", i, run), map[string]any{
		"displayName": fmt.Sprintf("Bench User %d", i), "externalId": fmt.Sprintf("ext-%d-%s", i, run),
	}))
	return data
}

// BenchmarkSCIMCreate: SCIM creates/s at 16 concurrent clients, and the
// ratio to raw JetStream publishes of the stored record's size.
func BenchmarkSCIMCreate(b *testing.B) {
	e := newEnv(b, 1)
	n := max(b.N, 500)
	run := fmt.Sprint(time.Now().UnixNano())
	// Size of what one create stores: the protobuf event record.
	st, data := benchDo(b, "POST", e.urls[0]+"/Users", benchUserJSON(-1, run))
	if st != 201 {
		b.Fatalf("create: %d %s", st, data)
	}
	size := recordSize(b, e, data)
	raw := rawPublishRate(b, e.js, size, n)
	b.ResetTimer()
	rate := parallel(n, func(i int) {
		if st, body := benchDo(b, "POST", e.urls[0]+"/Users", benchUserJSON(i, run)); st != 201 {
			b.Fatalf("create: %d %s", st, body)
		}
	})
	b.StopTimer()
	b.ReportMetric(rate, "creates/s")
	b.ReportMetric(raw, "rawpub/s")
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(float64(size), "record_bytes")
}

// recordSize reads the stored record of a created user.
func recordSize(b *testing.B, e *env, created []byte) int {
	var u struct{ ID string }
	_ = json.Unmarshal(created, &u)
	kv, err := e.js.KeyValue(context.Background(), eventbus.ResourceBucket)
	if err != nil {
		b.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), eventbus.UserKey("acme", u.ID))
	if err != nil {
		b.Fatal(err)
	}
	return len(entry.Value())
}

// BenchmarkUserNameLookup: `userName eq` lookups/s at 16 concurrent clients
// among 10,000 users, and the ratio to raw JetStream publishes of the
// response's size.
func BenchmarkUserNameLookup(b *testing.B) {
	e := newEnv(b, 1, func(c *ingest.Config, _ *ingest.Deps) { c.ConsistentReads = os.Getenv("BENCH_INCONSISTENT") == "" })
	const users = 10000
	seedUsers(b, e.js, "acme", users, 0)
	waitUsers(b, e, users)
	n := max(b.N, 2000)
	url := func(i int) string {
		return e.urls[0] + "/Users?filter=" + q(fmt.Sprintf(`userName eq "seed%d@example.com"`, i%users))
	}
	st, sample := benchDo(b, "GET", url(1), nil)
	if st != 200 || !bytes.Contains(sample, []byte(`"totalResults":1`)) {
		b.Fatalf("lookup: %d %s", st, sample)
	}
	raw := rawPublishRate(b, e.js, len(sample), n)
	b.ResetTimer()
	rate := parallel(n, func(i int) {
		if st, body := benchDo(b, "GET", url(i*7919), nil); st != 200 {
			b.Fatalf("lookup: %d %s", st, body)
		}
	})
	b.StopTimer()
	b.ReportMetric(rate, "lookups/s")
	b.ReportMetric(raw, "rawpub/s")
	b.ReportMetric(rate/raw, "ratio")
}

// BenchmarkGroupPatchOneMember: the time to PATCH one member into a
// 100,000-member group divided by the same on a 10-member group.
func BenchmarkGroupPatchOneMember(b *testing.B) {
	e := newEnv(b, 1)
	const big = 100000
	seedUsers(b, e.js, "acme", big+200, 0)
	seedGroup(b, e.js, "acme", "g-small", "Small", 0, 10)
	seedGroup(b, e.js, "acme", "g-big", "Big", 0, big)
	waitUsers(b, e, big+200)
	eventually(b, 2*time.Minute, "big group in the view", func() bool {
		st, body := benchDo(b, "GET", e.urls[0]+"/Groups/g-big?attributes=id", nil)
		return st == 200 && bytes.Contains(body, []byte("g-big"))
	})
	patch := func(group string, user int) time.Duration {
		body, _ := json.Marshal(patchBody(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": seedUserID(user)}}}))
		start := time.Now()
		if st, data := benchDo(b, "PATCH", e.urls[0]+"/Groups/"+group, body); st != 204 {
			b.Fatalf("patch %s: %d %s", group, st, data)
		}
		return time.Since(start)
	}
	// b.Loop runs this function once: the 100,000-member setup is not repeated.
	var small, large time.Duration
	rounds := 0
	for b.Loop() {
		u := big + rounds%200
		small += patch("g-small", u)
		large += patch("g-big", u)
		rounds++
	}
	b.ReportMetric(float64(small.Microseconds())/float64(rounds), "us/patch_10")
	b.ReportMetric(float64(large.Microseconds())/float64(rounds), "us/patch_100k")
	b.ReportMetric(float64(large)/float64(small), "ratio")
	// Entra's group probe must not cost O(group size) either.
	probe := e.urls[0] + "/Groups?excludedAttributes=members&filter=" + q(`displayName eq "Big"`)
	start := time.Now()
	for range 100 {
		if st, body := benchDo(b, "GET", probe, nil); st != 200 || bytes.Contains(body, []byte(`"members"`)) {
			b.Fatalf("probe: %d %.200s", st, body)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/100, "us/probe_100k")
	// Check the big group still answers in full.
	st, body := benchDo(b, "GET", e.urls[0]+"/Groups/g-big", nil)
	if st != 200 || len(body) < big*50 {
		b.Fatalf("GET big group: %d, %d bytes", st, len(body))
	}
}

// BenchmarkViewHeap: the ingest's heap with 100,000 users and 1,000 groups
// of 100 members each.
func BenchmarkViewHeap(b *testing.B) {
	for range b.N {
		const users, groups = 100000, 1000
		ns, js := benchNATS(b)
		seedUsers(b, js, "acme", users, 0)
		for g := range groups {
			seedGroup(b, js, "acme", fmt.Sprintf("grp-%d", g), fmt.Sprintf("Group %d", g), g*100, 100)
		}
		before := heapAfterGC()
		e := &env{t: b, nats: ns, js: js, ts: testTenants(b)}
		e.addReplica(func(c *ingest.Config, _ *ingest.Deps) { c.ConsistentReads = true })
		waitUsers(b, e, users)
		after := heapAfterGC()
		runtime.KeepAlive(e)
		b.ReportMetric(float64(after-before)/(1<<20), "heap_MiB")
		b.ReportMetric(float64(after-before)/float64(users), "bytes/user")
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func benchNATS(b *testing.B) (*natsembed.Server, jetstream.JetStream) {
	e := newEnv(b, 0)
	return e.nats, e.js
}

func seedUserID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// seedUsers publishes n user records straight into the bucket (what ingest
// would have written), ids seedUserID(from…from+n-1).
func seedUsers(b testing.TB, js jetstream.JetStream, tenant string, n, from int) {
	b.Helper()
	now := time.Now().UTC()
	publishAll(b, js, n, func(i int) (string, *eventv1.Event) {
		id := seedUserID(from + i)
		name := fmt.Sprintf("seed%d@example.com", from+i)
		snap, _ := json.Marshal(map[string]any{
			"schemas": []string{ingest.SchemaUser}, "id": id, "userName": name, "active": true,
			"displayName": fmt.Sprintf("Seed %d", from+i), "externalId": fmt.Sprintf("ext-%d", from+i),
			"name":   map[string]any{"givenName": "Seed", "familyName": fmt.Sprint(from + i)},
			"emails": []any{map[string]any{"value": name, "type": "work", "primary": true}},
			"meta":   map[string]any{"resourceType": "User", "created": now.Format(time.RFC3339Nano), "lastModified": now.Format(time.RFC3339Nano)},
		})
		return eventbus.UserKey(tenant, id), &eventv1.Event{
			TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, Op: eventv1.Operation_OPERATION_CREATE,
			ResourceId: id, Version: 1, Time: timestamppb.New(now), Snapshot: snap,
			Resource: &eventv1.Event_User{User: &eventv1.User{Id: id, UserName: name, Active: true, ExternalId: fmt.Sprintf("ext-%d", from+i)}},
		}
	})
}

// seedGroup publishes a group and its members seedUserID(first…first+n-1).
func seedGroup(b testing.TB, js jetstream.JetStream, tenant, id, name string, first, n int) {
	b.Helper()
	now := time.Now().UTC()
	snap, _ := json.Marshal(map[string]any{"schemas": []string{ingest.SchemaGroup}, "id": id, "displayName": name,
		"meta": map[string]any{"resourceType": "Group", "created": now.Format(time.RFC3339Nano), "lastModified": now.Format(time.RFC3339Nano)}})
	publishAll(b, js, 1, func(int) (string, *eventv1.Event) {
		return eventbus.GroupKey(tenant, id), &eventv1.Event{TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_GROUP,
			Op: eventv1.Operation_OPERATION_CREATE, ResourceId: id, Version: 1, Time: timestamppb.New(now), Snapshot: snap,
			Resource: &eventv1.Event_Group{Group: &eventv1.Group{Id: id, DisplayName: name}}}
	})
	publishAll(b, js, n, func(i int) (string, *eventv1.Event) {
		uid := seedUserID(first + i)
		return eventbus.MemberKey(tenant, id, uid), &eventv1.Event{TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_MEMBERSHIP,
			Op: eventv1.Operation_OPERATION_CREATE, ResourceId: id + "/" + uid, Version: 1, Time: timestamppb.New(now),
			Resource: &eventv1.Event_Membership{Membership: &eventv1.Membership{GroupId: id, UserId: uid, Member: true}}}
	})
}

func publishAll(b testing.TB, js jetstream.JetStream, n int, mk func(i int) (string, *eventv1.Event)) {
	b.Helper()
	for i := 0; i < n; {
		end := min(n, i+2000)
		for ; i < end; i++ {
			key, ev := mk(i)
			data, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			msg := nats.NewMsg(eventbus.ResourceSubjectPrefix + key)
			msg.Data = data
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("seeding timed out")
		}
	}
}

// waitUsers waits until replica 0 lists at least n users.
func waitUsers(b *testing.B, e *env, n int) {
	b.Helper()
	eventually(b, 3*time.Minute, fmt.Sprintf("%d users in the view", n), func() bool {
		st, body := benchDo(b, "GET", e.urls[0]+"/Users?count=0", nil)
		var r struct{ TotalResults int }
		_ = json.Unmarshal(body, &r)
		return st == 200 && r.TotalResults >= n
	})
}
