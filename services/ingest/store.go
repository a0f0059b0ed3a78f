package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// newID returns a random UUIDv4, the SCIM id of a new resource.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// put writes one event with compare-and-set and, once JetStream has
// acknowledged it, applies it to the view (read-your-writes).
func (s *Service) put(ctx context.Context, ev *eventv1.Event, expectedRev uint64) (uint64, error) {
	st := s.getStore()
	if st == nil {
		return 0, fmt.Errorf("ingest: store not open: %w", eventbus.ErrUnavailable)
	}
	if !s.connected() {
		// Do not hand the write to a reconnecting client: with a reconnect
		// buffer it would be sent after we answered 503.
		s.metrics.write("unavailable")
		return 0, fmt.Errorf("ingest: put %s: NATS not connected: %w", keyOf(ev), errors.Join(eventbus.ErrUnavailable, errNotWritten))
	}
	if err := s.checkSize(ev); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	rev, err := st.Put(ctx, keyOf(ev), ev, expectedRev)
	switch {
	case err == nil:
		s.metrics.write("ok")
		s.metrics.publish(kindLabel(ev.GetKind()))
	case errors.Is(err, eventbus.ErrConflict):
		s.metrics.write("conflict")
	default:
		s.metrics.write("unavailable")
	}
	if err != nil {
		if !errors.Is(err, eventbus.ErrConflict) && !errors.Is(err, eventbus.ErrUnavailable) {
			err = errors.Join(eventbus.ErrUnavailable, err)
		}
		if refused(err) {
			err = errors.Join(err, errNotWritten)
		}
		return 0, err
	}
	s.view.applyOwn(ev, rev)
	return rev, nil
}

// refused reports whether JetStream answered a publish with an error (so
// it certainly did not store it), as opposed to not answering in time.
func refused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, eventbus.ErrConflict) || errors.As(err, &apiErr) || errors.Is(err, nats.ErrNoResponders)
}

// checkSize refuses a record larger than MaxResourceBytes: a resource must
// stay well below what NATS (max_payload) and the applier's gRPC call to
// mapping can carry, or the IdP would get 5xx for it forever. The limit is
// on the stored SCIM JSON, the bulk of a record.
func (s *Service) checkSize(ev *eventv1.Event) error {
	if n := len(ev.GetSnapshot()); n > s.cfg.MaxResourceBytes {
		kind := "resource"
		switch ev.GetResource().(type) {
		case *eventv1.Event_User:
			kind = "User"
		case *eventv1.Event_Group:
			kind = "Group"
		case *eventv1.Event_Membership:
			kind = "group member"
		}
		return badRequest(scimInvalidValue, "the %s would be %d bytes stored; the limit is %d bytes", kind, n, s.cfg.MaxResourceBytes)
	}
	return nil
}

// connected reports whether the NATS connection is up. Requests are not
// handed to a reconnecting client: with nats.go's reconnect buffer they
// would wait, or be sent after we answered.
func (s *Service) connected() bool {
	nc := s.deps.JS.Conn()
	return nc == nil || nc.IsConnected()
}

// refresh reads a key from JetStream into the view (after a lost CAS race).
func (s *Service) refresh(ctx context.Context, key string) error {
	st := s.getStore()
	if st == nil {
		return fmt.Errorf("ingest: store not open: %w", eventbus.ErrUnavailable)
	}
	rec, err := st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, eventbus.ErrNotFound) {
			return nil
		}
		return err
	}
	s.view.apply(rec.Event, rec.Revision)
	return nil
}

// lockUnique takes the in-process locks of the given unique values (in a
// fixed order) so that check-then-write of a userName, snowflake or group
// displayName is atomic among this replica's requests.
func (s *Service) lockUnique(vals ...string) func() {
	idx := make([]int, 0, len(vals))
	for _, v := range vals {
		if v == "" {
			continue
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(v))
		i := int(h.Sum32() % uint32(len(s.stripes)))
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.stripes[i].Unlock()
		}
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// userEvent builds the event (and snapshot) of a user document.
func userEvent(tenant string, op eventv1.Operation, doc map[string]any, version uint64, now time.Time, deleted bool) (*eventv1.Event, error) {
	snap, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("ingest: encode user snapshot: %w", err)
	}
	id, _ := doc["id"].(string)
	u := &eventv1.User{Id: id, Active: true, Deleted: deleted}
	u.UserName, _ = doc["userName"].(string)
	u.ExternalId, _ = doc["externalId"].(string)
	if a, ok := doc["active"].(bool); ok {
		u.Active = a
	}
	if ext, ok := doc[SchemaDiscord].(map[string]any); ok {
		u.DiscordUserId, _ = ext[discordUserIDAttr].(string)
	}
	return &eventv1.Event{
		TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_USER, Op: op, ResourceId: id,
		Version: version, Time: ts(now), Snapshot: snap, Resource: &eventv1.Event_User{User: u},
	}, nil
}

// groupEvent builds the event of a group document (members excluded).
func groupEvent(tenant string, op eventv1.Operation, doc map[string]any, version uint64, now time.Time, deleted bool) (*eventv1.Event, error) {
	snap, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("ingest: encode group snapshot: %w", err)
	}
	id, _ := doc["id"].(string)
	g := &eventv1.Group{Id: id, Deleted: deleted}
	g.DisplayName, _ = doc["displayName"].(string)
	g.ExternalId, _ = doc["externalId"].(string)
	return &eventv1.Event{
		TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_GROUP, Op: op, ResourceId: id,
		Version: version, Time: ts(now), Snapshot: snap, Resource: &eventv1.Event_Group{Group: g},
	}, nil
}

// membershipEvent is one (group, user) record. Its snapshot is empty, or
// {"display": "…"} when the IdP sent a display for the member (Microsoft's
// suite reads it back).
func membershipEvent(tenant, groupID, userID string, member bool, display string, now time.Time) *eventv1.Event {
	op := eventv1.Operation_OPERATION_CREATE
	if !member {
		op = eventv1.Operation_OPERATION_DELETE
	}
	var snap []byte
	if member && display != "" {
		snap, _ = json.Marshal(map[string]string{"display": display})
	}
	return &eventv1.Event{
		TenantId: tenant, Kind: eventv1.ResourceKind_RESOURCE_KIND_MEMBERSHIP, Op: op,
		ResourceId: groupID + "/" + userID, Version: 1, Time: ts(now), Snapshot: snap,
		Resource: &eventv1.Event_Membership{Membership: &eventv1.Membership{GroupId: groupID, UserId: userID, Member: member}},
	}
}

// setMembers writes membership records (true: add, false: remove), in
// parallel, each with compare-and-set against the record's current
// revision. It returns the first error; records already written stay (each
// is a complete, valid change on its own).
func (s *Service) setMembers(ctx context.Context, tenant, groupID string, changes map[string]bool, display map[string]string) error {
	if len(changes) == 0 {
		return nil
	}
	now := time.Now().UTC()
	ids := make([]string, 0, len(changes))
	for id := range changes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	workers := min(64, len(ids))
	work := make(chan string)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for uid := range work {
				if err := s.setMember(ctx, tenant, groupID, uid, changes[uid], display[uid], now); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					errMu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return firstErr
}

func (s *Service) setMember(ctx context.Context, tenant, groupID, userID string, member bool, display string, now time.Time) error {
	key := eventbus.MemberKey(tenant, groupID, userID)
	for range 8 {
		s.view.mu.RLock()
		t := s.view.tenant(tenant)
		var rev uint64
		var is bool
		var curDisplay string
		if t != nil {
			rev = t.memberRev[memberKey(groupID, userID)]
			_, is = t.members[groupID][userID]
			curDisplay = t.memberDisplay[memberKey(groupID, userID)]
		}
		s.view.mu.RUnlock()
		if is == member && (rev != 0 || !member) && (!member || display == "" || display == curDisplay) {
			return nil
		}
		_, err := s.put(ctx, membershipEvent(tenant, groupID, userID, member, display, now), rev)
		if err == nil || !errors.Is(err, eventbus.ErrConflict) {
			return err
		}
		if err := s.refresh(ctx, key); err != nil {
			return err
		}
	}
	return fmt.Errorf("ingest: membership %s: too many concurrent changes: %w", key, eventbus.ErrConflict)
}

// lower is the uniqueness key of a userName or group displayName: the
// claim key, the view's name indexes and `eq` on these attributes use it.
// The name is case-insensitive (RFC 7643 §4.1.1 userName, §4.2
// displayName), so the key is Unicode NFC, full case folding (ſ = s,
// ß = ss) and surrounding whitespace removed: "Änne" in NFC and NFD,
// "ſam" and "sam", "sam " and "sam" are one name. The value itself is
// stored as sent.
func lower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	s = strings.TrimSpace(s)
	if ascii {
		return strings.ToLower(s)
	}
	return norm.NFC.String(cases.Fold().String(norm.NFC.String(s)))
}
