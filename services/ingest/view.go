package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// userRec is a user as the view holds it: the stored snapshot plus the
// fields that are indexed.
type userRec struct {
	id, userName, externalID, discordID, displayName string
	active                                           bool
	raw                                              []byte // canonical JSON snapshot
	rev                                              uint64 // stream sequence of the record: the ETag
	version                                          uint64 // Event.version
	created, modified                                time.Time
}

// groupRec is a group: its record; members live in tenantView.members.
type groupRec struct {
	id, displayName, externalID string
	raw                         []byte
	rev                         uint64    // the group record's own revision (CAS)
	attrModified                time.Time // lastModified of the group record itself (not its memberships)
	etagRev                     uint64    // max of rev and its membership records' revisions
	version                     uint64
	created, modified           time.Time
}

// tenantView is one tenant's resources and indexes.
type tenantView struct {
	users         map[string]*userRec
	groups        map[string]*groupRec
	userByName    map[string]string // lower-case userName → id
	userByExt     map[string]map[string]struct{}
	userByDisc    map[string]string // Discord snowflake → id
	groupByName   map[string]string // lower-case displayName → id
	groupByExt    map[string]map[string]struct{}
	members       map[string]map[string]struct{} // group → users (member=true)
	userGroups    map[string]map[string]struct{} // user → groups (member=true)
	memberRev     map[string]uint64              // "group/user" → revision of the membership record
	memberDisplay map[string]string              // "group/user" → display the IdP sent, if any
	deleted       map[string]time.Time           // ids of users and groups deleted recently → when (see pruneDeleted)
	deletedOrder  []string                       // ids of deleted, oldest first
	tombstoneTTL  time.Duration
	// userMemberRev / userMemberMod: the newest membership record (open or
	// closed) naming the user, and its time — part of the user's ETag and
	// lastModified, because a user renders its groups.
	userMemberRev map[string]uint64
	userMemberMod map[string]time.Time
}

func newTenantView() *tenantView {
	return &tenantView{
		users: map[string]*userRec{}, groups: map[string]*groupRec{},
		userByName: map[string]string{}, userByExt: map[string]map[string]struct{}{}, userByDisc: map[string]string{},
		groupByName: map[string]string{}, groupByExt: map[string]map[string]struct{}{},
		members: map[string]map[string]struct{}{}, userGroups: map[string]map[string]struct{}{},
		memberRev: map[string]uint64{}, memberDisplay: map[string]string{}, deleted: map[string]time.Time{},
		userMemberRev: map[string]uint64{}, userMemberMod: map[string]time.Time{},
	}
}

// view is the in-memory state of every tenant, kept current by watching the
// resource bucket and by the writer's own acknowledged writes
// (read-your-writes). Applying a record is idempotent: an older revision of
// a key never replaces a newer one.
type view struct {
	mu        sync.RWMutex
	tenants   map[string]*tenantView
	watermark uint64        // highest stream sequence delivered by the watcher
	advanced  chan struct{} // closed and replaced when watermark grows
	// tombstoneTTL: how long deleted ids are remembered (tenantView.tombstone).
	tombstoneTTL time.Duration

	// gate is held by the watcher while it applies one update. Tests take it
	// to hold a replica's view behind the stream (export_test.go); it is
	// never contended otherwise.
	gate sync.Mutex
	// waiting counts callers of waitFor that are blocked behind the watcher.
	waiting atomic.Int64
}

func newView() *view {
	return &view{tenants: map[string]*tenantView{}, advanced: make(chan struct{}), tombstoneTTL: defaultTombstoneTTL}
}

// tenant returns a tenant's view (nil when it has no resources yet); the
// caller holds v.mu.
func (v *view) tenant(id string) *tenantView { return v.tenants[id] }

func (v *view) tenantW(id string) *tenantView {
	t := v.tenants[id]
	if t == nil {
		t = newTenantView()
		t.tombstoneTTL = v.tombstoneTTL
		v.tenants[id] = t
	}
	return t
}

// snapshotMeta is what the view reads from a snapshot besides the event.
type snapshotMeta struct {
	DisplayName string `json:"displayName"`
	Meta        struct {
		Created      time.Time `json:"created"`
		LastModified time.Time `json:"lastModified"`
	} `json:"meta"`
}

// applyRecord applies one record of the resource bucket.
func (v *view) applyRecord(key string, data []byte, rev uint64) error {
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return fmt.Errorf("ingest: decode record %s rev %d: %w", key, rev, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applyLocked(ev, rev)
	if m := ev.GetMembership(); m != nil && !m.GetMember() {
		// The watcher delivers the bucket in order, so every earlier record
		// of this key is applied: a closed membership needs no revision any
		// more (a later re-add that finds none loses its CAS once and
		// re-reads the record). Keeps memberRev O(open memberships).
		t := v.tenantW(ev.GetTenantId())
		k := memberKey(m.GetGroupId(), m.GetUserId())
		if t.memberRev[k] == rev {
			delete(t.memberRev, k)
		}
	}
	return nil
}

// applyOwn applies an event written by this process, once acknowledged
// (read-your-writes). A record the watcher has delivered already is not
// applied again: the watcher may have pruned it (a closed membership).
func (v *view) applyOwn(ev *eventv1.Event, rev uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rev <= v.watermark {
		return
	}
	v.applyLocked(ev, rev)
}

// apply applies a record read from the bucket (refresh after a lost CAS).
func (v *view) apply(ev *eventv1.Event, rev uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applyLocked(ev, rev)
}

func (v *view) applyLocked(ev *eventv1.Event, rev uint64) {
	t := v.tenantW(ev.GetTenantId())
	switch r := ev.GetResource().(type) {
	case *eventv1.Event_User:
		t.applyUser(ev, r.User, rev)
	case *eventv1.Event_Group:
		t.applyGroup(ev, r.Group, rev)
	case *eventv1.Event_Membership:
		t.applyMembership(ev, r.Membership, rev)
	}
}

func addIdx(m map[string]map[string]struct{}, k, id string) {
	if k == "" {
		return
	}
	s := m[k]
	if s == nil {
		s = map[string]struct{}{}
		m[k] = s
	}
	s[id] = struct{}{}
}

func delIdx(m map[string]map[string]struct{}, k, id string) {
	if s := m[k]; s != nil {
		delete(s, id)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

func (t *tenantView) unindexUser(u *userRec) {
	if t.userByName[lower(u.userName)] == u.id {
		delete(t.userByName, lower(u.userName))
	}
	delIdx(t.userByExt, u.externalID, u.id)
	if u.discordID != "" && t.userByDisc[u.discordID] == u.id {
		delete(t.userByDisc, u.discordID)
	}
}

func (t *tenantView) applyUser(ev *eventv1.Event, u *eventv1.User, rev uint64) {
	old := t.users[u.GetId()]
	if old != nil && old.rev >= rev {
		return
	}
	if old != nil {
		t.unindexUser(old)
	}
	if u.GetDeleted() || ev.GetOp() == eventv1.Operation_OPERATION_DELETE {
		delete(t.users, u.GetId())
		delete(t.userMemberRev, u.GetId())
		delete(t.userMemberMod, u.GetId())
		t.tombstone(u.GetId())
		return
	}
	var sm snapshotMeta
	_ = json.Unmarshal(ev.GetSnapshot(), &sm)
	rec := &userRec{
		id: u.GetId(), userName: u.GetUserName(), externalID: u.GetExternalId(), discordID: u.GetDiscordUserId(),
		displayName: sm.DisplayName, active: u.GetActive(), raw: ev.GetSnapshot(), rev: rev, version: ev.GetVersion(),
		created: sm.Meta.Created, modified: sm.Meta.LastModified,
	}
	t.users[rec.id] = rec
	t.userByName[lower(rec.userName)] = rec.id
	addIdx(t.userByExt, rec.externalID, rec.id)
	if rec.discordID != "" {
		t.userByDisc[rec.discordID] = rec.id
	}
}

func (t *tenantView) applyGroup(ev *eventv1.Event, g *eventv1.Group, rev uint64) {
	old := t.groups[g.GetId()]
	if old != nil && old.rev >= rev {
		return
	}
	if old != nil {
		if t.groupByName[lower(old.displayName)] == old.id {
			delete(t.groupByName, lower(old.displayName))
		}
		delIdx(t.groupByExt, old.externalID, old.id)
	}
	if g.GetDeleted() || ev.GetOp() == eventv1.Operation_OPERATION_DELETE {
		delete(t.groups, g.GetId())
		t.tombstone(g.GetId())
		return
	}
	var sm snapshotMeta
	_ = json.Unmarshal(ev.GetSnapshot(), &sm)
	rec := &groupRec{
		id: g.GetId(), displayName: g.GetDisplayName(), externalID: g.GetExternalId(), raw: ev.GetSnapshot(),
		rev: rev, etagRev: rev, version: ev.GetVersion(), created: sm.Meta.Created, modified: sm.Meta.LastModified,
		attrModified: sm.Meta.LastModified,
	}
	if old != nil {
		rec.etagRev = max(rev, old.etagRev)
		if old.modified.After(rec.modified) {
			rec.modified = old.modified
		}
	}
	t.groups[rec.id] = rec
	t.groupByName[lower(rec.displayName)] = rec.id
	addIdx(t.groupByExt, rec.externalID, rec.id)
}

func memberKey(g, u string) string { return g + "/" + u }

func (t *tenantView) applyMembership(ev *eventv1.Event, m *eventv1.Membership, rev uint64) {
	k := memberKey(m.GetGroupId(), m.GetUserId())
	if t.memberRev[k] >= rev {
		return
	}
	t.memberRev[k] = rev
	if uid := m.GetUserId(); rev > t.userMemberRev[uid] {
		t.userMemberRev[uid] = rev
		if ts := ev.GetTime(); ts != nil && ts.AsTime().After(t.userMemberMod[uid]) {
			t.userMemberMod[uid] = ts.AsTime()
		}
	}
	if m.GetMember() {
		addIdx(t.members, m.GetGroupId(), m.GetUserId())
		addIdx(t.userGroups, m.GetUserId(), m.GetGroupId())
		var d struct {
			Display string `json:"display"`
		}
		if len(ev.GetSnapshot()) > 0 && json.Unmarshal(ev.GetSnapshot(), &d) == nil && d.Display != "" {
			t.memberDisplay[k] = d.Display
		} else {
			delete(t.memberDisplay, k)
		}
	} else {
		delIdx(t.members, m.GetGroupId(), m.GetUserId())
		delIdx(t.userGroups, m.GetUserId(), m.GetGroupId())
		delete(t.memberDisplay, k)
	}
	if g := t.groups[m.GetGroupId()]; g != nil {
		ng := *g // copy-on-write: readers hold *groupRec without the lock
		ng.etagRev = max(g.etagRev, rev)
		if ts := ev.GetTime(); ts != nil && ts.AsTime().After(g.modified) {
			ng.modified = ts.AsTime()
		}
		t.groups[m.GetGroupId()] = &ng
	}
}

// defaultTombstoneTTL is how long the view remembers a deleted id. It only
// serves uniqueness claims younger than their lease (WriteTimeout+1s) held
// by a resource deleted since (claimState); older claims of an unknown
// owner are taken over anyway. Bounded, so churn does not grow the heap.
const defaultTombstoneTTL = 10 * time.Minute

// tombstone records a deletion and forgets those older than the TTL.
func (t *tenantView) tombstone(id string) {
	now := time.Now()
	if _, ok := t.deleted[id]; !ok {
		t.deletedOrder = append(t.deletedOrder, id)
	}
	t.deleted[id] = now
	n := 0
	for n < len(t.deletedOrder) && now.Sub(t.deleted[t.deletedOrder[n]]) > t.tombstoneTTL {
		delete(t.deleted, t.deletedOrder[n])
		n++
	}
	if n > 0 {
		t.deletedOrder = append(t.deletedOrder[:0:0], t.deletedOrder[n:]...)
	}
}

// userVersion is a user's ETag revision and lastModified: the newest of
// its own record, the membership records naming it (a membership added or
// closed changes its groups), and the records of its current groups (a
// rename changes groups[].display). The caller holds the view lock.
func (t *tenantView) userVersion(u *userRec) (uint64, time.Time) {
	rev, mod := u.rev, u.modified
	rev = max(rev, t.userMemberRev[u.id])
	if m := t.userMemberMod[u.id]; m.After(mod) {
		mod = m
	}
	for gid := range t.userGroups[u.id] {
		if g := t.groups[gid]; g != nil {
			rev = max(rev, g.rev)
			if g.attrModified.After(mod) {
				mod = g.attrModified
			}
		}
	}
	return rev, mod
}

// setWatermark records that the watcher delivered everything up to seq.
func (v *view) setWatermark(seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if seq > v.watermark {
		v.watermark = seq
		close(v.advanced)
		v.advanced = make(chan struct{})
	}
}

// waitFor blocks until the watcher has delivered seq.
func (v *view) waitFor(ctx context.Context, seq uint64) error {
	counted := false
	defer func() {
		if counted {
			v.waiting.Add(-1)
		}
	}()
	for {
		v.mu.RLock()
		w, ch := v.watermark, v.advanced
		v.mu.RUnlock()
		if w >= seq {
			return nil
		}
		if !counted {
			counted = true
			v.waiting.Add(1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// watch keeps the view current until ctx ends. It calls caughtUp once the
// initial values have been delivered (every time the watch is re-created).
// A signal on restart (NATS reconnected, or a reader found the view behind
// the stream) re-creates the watch from the next revision the view needs.
func (v *view) watch(ctx context.Context, kv jetstream.KeyValue, restart <-chan struct{}, caughtUp func(), onErr func(error)) {
	for ctx.Err() == nil {
		err := v.watchOnce(ctx, kv, restart, caughtUp)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errWatchRestart) {
			continue
		}
		onErr(err)
		select {
		case <-ctx.Done():
			return
		case <-restart:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var (
	errWatchClosed  = errors.New("ingest: watch closed")
	errWatchRestart = errors.New("ingest: watch restart requested")
)

func (v *view) watchOnce(ctx context.Context, kv jetstream.KeyValue, restart <-chan struct{}, caughtUp func()) error {
	v.mu.RLock()
	from := v.watermark
	v.mu.RUnlock()
	var opts []jetstream.WatchOpt
	if from > 0 {
		// Records are applied idempotently by revision, so resuming from the
		// next one loses nothing (History 1 keeps every key's latest record).
		opts = append(opts, jetstream.ResumeFromRevision(from+1))
	}
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return fmt.Errorf("ingest: watch bucket from revision %d: %w", from+1, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-restart:
			return errWatchRestart
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchClosed
			}
			if e == nil {
				caughtUp()
				continue
			}
			v.gate.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				// A record this version cannot read is skipped (its sequence
				// still counts as delivered: the read and write barriers
				// must not stall on it).
				_ = v.applyRecord(e.Key(), e.Value(), e.Revision())
			}
			v.setWatermark(e.Revision())
			v.gate.Unlock()
		}
	}
}

// keyOf is the bucket key of an event.
func keyOf(ev *eventv1.Event) string {
	switch r := ev.GetResource().(type) {
	case *eventv1.Event_User:
		return eventbus.UserKey(ev.GetTenantId(), r.User.GetId())
	case *eventv1.Event_Group:
		return eventbus.GroupKey(ev.GetTenantId(), r.Group.GetId())
	case *eventv1.Event_Membership:
		return eventbus.MemberKey(ev.GetTenantId(), r.Membership.GetGroupId(), r.Membership.GetUserId())
	}
	return ""
}
