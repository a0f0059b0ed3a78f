package mapping

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// Sentinel errors of the rule-set store (mapped to gRPC codes at the edge).
var (
	// ErrNotFound means there is no (live) rule set for the tenant and guild.
	ErrNotFound = errors.New("mapping: rule set not found")
	// ErrConflict means the rule set's version is not the expected one.
	ErrConflict = errors.New("mapping: rule set version conflict")
	// ErrReadOnly means the service runs without a store (no JetStream).
	ErrReadOnly = errors.New("mapping: no rule store (running without JetStream)")
	// ErrUnavailable means JetStream did not answer.
	ErrUnavailable = errors.New("mapping: rule store unavailable")
	// ErrGeneration means a rules file is older than the generation stored
	// with a rule set, or has the stored generation with different rules.
	ErrGeneration = errors.New("mapping: rules file refused by its generation")
)

// MaxStoredBytes bounds one stored rule set: NATS's default maximum payload.
const MaxStoredBytes = 1 << 20

// storedSet is the value of one rule set in the bucket (key "<tenant>.<guild>").
// A delete is a record with Deleted set, so that the version keeps growing and
// a rule set deleted through the API is not re-seeded from the file.
type storedSet struct {
	Tenant string `json:"tenant"`
	Guild  string `json:"guild"`
	Source string `json:"source"` // "file:<sha256>" or "api"
	// Generation is the rules file's generation, for rule sets written from a
	// rules file (seeded, applied, or deleted because the file dropped them).
	Generation int64           `json:"generation,omitempty"`
	Deleted    bool            `json:"deleted,omitempty"`
	UpdatedAt  time.Time       `json:"updated_at"`
	Rules      rules.GuildSpec `json:"rules"`
}

// RuleSetInfo is a stored rule set with its version.
type RuleSetInfo struct {
	Tenant, Guild string
	Version       uint64
	Source        string
	UpdatedAt     time.Time
	Spec          rules.GuildSpec
}

func setKeyString(tenant, guild string) string { return tenant + "." + guild }

func fileSource(g *rules.GuildSpec) string {
	b, _ := json.Marshal(g)
	sum := sha256.Sum256(b)
	return "file:" + hex.EncodeToString(sum[:])
}

// runStore makes sure the bucket exists, seeds it from the rules file, and
// keeps the registry in line with it (every replica watches the bucket, so all
// serve the same version within moments of a write) until ctx ends.
func (s *Service) runStore(ctx context.Context) error {
	// JetStream may not be up yet (or restarting): retry until it is; the
	// health service says NOT_SERVING meanwhile.
	var kv jetstream.KeyValue
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		var err error
		if kv, err = s.prepareStore(ctx); err == nil {
			break
		}
		var ve *rules.ValidationError
		if errors.As(err, &ve) || errors.Is(err, ErrGeneration) {
			return err // permanent: a retry cannot fix the file
		}
		s.log.WarnContext(ctx, "rule store not available yet, retrying", "bucket", s.cfg.Bucket, "error", err, "delay", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	// A watch does not always survive a NATS restart: restart it when the
	// connection comes back, and when the bucket is ahead of what it delivered.
	var reconnected chan nats.Status
	if nc := s.js.Conn(); nc != nil {
		reconnected = nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(reconnected)
	}
	tick := time.NewTicker(s.cfg.ResyncInterval)
	defer tick.Stop()
	for delay := 250 * time.Millisecond; ctx.Err() == nil; {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			s.log.WarnContext(ctx, "rule watch failed, retrying", "bucket", s.cfg.Bucket, "error", err, "delay", delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		started := time.Now()
		why := s.watch(ctx, kv, w, reconnected, tick.C)
		_ = w.Stop()
		if why == "" {
			continue
		}
		s.log.InfoContext(ctx, "restarting the rule watch", "bucket", s.cfg.Bucket, "reason", why)
		if time.Since(started) > 5*time.Second {
			delay = 250 * time.Millisecond
			continue
		}
		// Restarting again soon after the last one: back off.
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
	return nil
}

// watch applies the watcher's entries until ctx ends or the watch must be
// restarted (it returns why).
func (s *Service) watch(ctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher, reconnected <-chan nats.Status, tick <-chan time.Time) string {
	var seen uint64
	initial, behind := true, 0
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-reconnected:
			return "NATS connection re-established"
		case <-tick:
			if initial {
				continue
			}
			if last, err := lastRevision(ctx, kv); err == nil && last > seen {
				behind++
			} else {
				behind = 0
			}
			if behind >= 2 {
				return "the bucket is ahead of the watch"
			}
		case e, ok := <-w.Updates():
			if !ok {
				return "the watch ended"
			}
			if e == nil { // the initial values are in
				initial = false
				s.markReady()
				continue
			}
			seen = max(seen, e.Revision())
			s.apply(ctx, e)
		}
	}
}

// lastRevision is the bucket's last stream sequence (its newest revision).
func lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0, errors.New("mapping: bucket status without stream info")
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// prepareStore opens the bucket and seeds it from the rules file.
func (s *Service) prepareStore(ctx context.Context) (jetstream.KeyValue, error) {
	octx, cancel := context.WithTimeout(ctx, 2*time.Second) // fail fast while NATS is down
	defer cancel()
	kv, err := s.openBucket(octx)
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := s.seed(sctx, kv); err != nil {
		return nil, err
	}
	return kv, nil
}

func (s *Service) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.cfg.Bucket,
		Description: "scimcord mapping rule sets, one key per tenant and guild",
		History:     uint8(s.cfg.History),
		Replicas:    s.cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("mapping: ensure bucket %s: %w", s.cfg.Bucket, errors.Join(ErrUnavailable, err))
	}
	s.mu.Lock()
	s.kv = kv
	s.mu.Unlock()
	return kv, nil
}

func (s *Service) bucket() (jetstream.KeyValue, error) {
	if s.js == nil {
		return nil, ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil {
		return nil, fmt.Errorf("mapping: bucket %s not open yet: %w", s.cfg.Bucket, ErrUnavailable)
	}
	return s.kv, nil
}

// apply installs one bucket entry into the registry.
func (s *Service) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	tenant, guild, ok := strings.Cut(e.Key(), ".")
	if !ok {
		s.log.WarnContext(ctx, "ignoring malformed rule-set key", "bucket", s.cfg.Bucket, "key", e.Key())
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		s.rules.set(tenant, guild, nil, e.Revision())
		return
	}
	var st storedSet
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		s.log.ErrorContext(ctx, "stored rule set does not decode; keeping the previous version",
			"tenant", tenant, "guild", guild, "version", e.Revision(), "error", err)
		return
	}
	if st.Deleted {
		s.rules.set(tenant, guild, nil, e.Revision())
		s.log.InfoContext(ctx, "rule set deleted", "tenant", tenant, "guild", guild, "version", e.Revision())
		return
	}
	st.Rules.ID = guild
	rs, err := rules.Compile(tenant, e.Revision(), &st.Rules)
	if err != nil {
		s.log.ErrorContext(ctx, "stored rule set does not compile; keeping the previous version",
			"tenant", tenant, "guild", guild, "version", e.Revision(), "error", err)
		return
	}
	rs.Source, rs.UpdatedAt = st.Source, st.UpdatedAt
	s.rules.set(tenant, guild, rs, e.Revision())
	s.log.InfoContext(ctx, "rule set loaded", "tenant", tenant, "guild", guild, "version", e.Revision(),
		"rules", rs.Len(), "source", st.Source)
}

// fileDecision is what a rules file of some generation may do to a stored rule set.
type fileDecision int

const (
	fileWrite    fileDecision = iota // write the file's version (or delete)
	fileSame                         // the stored version is the file's: nothing to do
	fileAPI                          // changed through the API: the file does not override it at start
	fileOlder                        // the file is older than the stored generation: keep the stored version
	fileConflict                     // same generation, different rules: refuse
)

// decideFile compares a stored rule set with a rules file of generation gen
// whose version of it has source src ("" when the file does not list it).
func decideFile(cur *storedSet, gen int64, src string) fileDecision {
	switch {
	case cur == nil:
		if src == "" {
			return fileSame
		}
		return fileWrite
	case !strings.HasPrefix(cur.Source, "file:"):
		return fileAPI
	case src == "" && cur.Deleted, cur.Source == src && !cur.Deleted:
		if cur.Generation < gen && src != "" {
			return fileWrite // the same rules: record the newer generation
		}
		return fileSame
	case cur.Generation > gen:
		return fileOlder
	case cur.Generation == gen:
		return fileConflict
	}
	return fileWrite
}

// generationError explains a refused rules file.
func generationError(key string, cur *storedSet, rev uint64, gen int64, d fileDecision) error {
	if d == fileOlder {
		return fmt.Errorf("%w: rule set %s: the rules file has generation %d, older than generation %d stored at version %d",
			ErrGeneration, key, gen, cur.Generation, rev)
	}
	return fmt.Errorf("%w: rule set %s: the rules file has generation %d, as stored at version %d, but different rules: raise `generation:` in the rules file to replace them",
		ErrGeneration, key, gen, rev)
}

// seed writes the file's rule sets into the bucket: missing ones are created,
// ones last written from an older generation of the rules file are replaced
// (GitOps), ones edited through the API are kept (with a warning), and
// file-sourced ones that the file no longer lists are deleted. A rule set
// stored from a newer generation is kept (warning, metric): a replica started
// with a stale file does not roll the policy back. The same generation with
// different rules is an error (ErrGeneration): the service does not start.
func (s *Service) seed(ctx context.Context, kv jetstream.KeyValue) error {
	inFile := map[string]bool{}
	for _, t := range s.file.Tenants {
		for i := range t.Guilds {
			g := &t.Guilds[i]
			inFile[setKeyString(t.ID, g.ID)] = true
			if err := s.seedOne(ctx, kv, t.ID, g); err != nil {
				return err
			}
		}
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return fmt.Errorf("mapping: list bucket %s: %w", s.cfg.Bucket, errors.Join(ErrUnavailable, err))
	}
	if lister == nil {
		return nil
	}
	var stale []string
	for k := range lister.Keys() {
		if !inFile[k] {
			stale = append(stale, k)
		}
	}
	gen := s.file.Generation
	for _, k := range stale {
		cur, rev, err := readSet(ctx, kv, k)
		if err != nil || cur == nil {
			continue
		}
		switch d := decideFile(cur, gen, ""); d {
		case fileOlder:
			s.staleFile(ctx, k, cur, rev)
			continue
		case fileConflict:
			return generationError(k, cur, rev, gen, d)
		case fileWrite:
		default:
			continue
		}
		cur.Deleted, cur.UpdatedAt, cur.Source, cur.Generation = true, time.Now().UTC(), "file:removed", gen
		if _, err := writeSet(ctx, kv, k, cur, rev); err != nil && !errors.Is(err, ErrConflict) {
			return err
		}
		s.log.InfoContext(ctx, "rule set removed from the rules file: deleted", "key", k, "generation", gen)
	}
	return nil
}

// staleFile notes a rule set kept because this replica's file is older.
func (s *Service) staleFile(ctx context.Context, key string, cur *storedSet, rev uint64) {
	s.metrics.seedStale.Add(1)
	s.log.WarnContext(ctx, "rules file is older than the stored rule set: keeping the stored version (update this replica's rules file)",
		"key", key, "file_generation", s.file.Generation, "stored_generation", cur.Generation, "version", rev)
}

func (s *Service) seedOne(ctx context.Context, kv jetstream.KeyValue, tenant string, g *rules.GuildSpec) error {
	key := setKeyString(tenant, g.ID)
	src := fileSource(g)
	gen := s.file.Generation
	for attempt := 0; attempt < 5; attempt++ {
		cur, rev, err := readSet(ctx, kv, key)
		if err != nil {
			return err
		}
		switch d := decideFile(cur, gen, src); d {
		case fileSame:
			return nil // already there
		case fileAPI:
			s.log.WarnContext(ctx, "rule set was changed through the API; the rules file does not override it",
				"tenant", tenant, "guild", g.ID, "version", rev)
			return nil
		case fileOlder:
			s.staleFile(ctx, key, cur, rev)
			return nil
		case fileConflict:
			return generationError(key, cur, rev, gen, d)
		}
		next := &storedSet{Tenant: tenant, Guild: g.ID, Source: src, Generation: gen, UpdatedAt: time.Now().UTC(), Rules: *g}
		_, err = writeSet(ctx, kv, key, next, rev)
		if errors.Is(err, ErrConflict) {
			continue // another replica seeded at the same time: look again
		}
		if err == nil {
			s.log.InfoContext(ctx, "rule set seeded from the rules file", "tenant", tenant, "guild", g.ID, "previous_version", rev, "generation", gen)
		}
		return err
	}
	return fmt.Errorf("mapping: seed %s: %w", key, ErrConflict)
}

// read returns the stored value and revision of key (nil, 0 when absent).
func readSet(ctx context.Context, kv jetstream.KeyValue, key string) (*storedSet, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mapping: read %s: %w", key, errors.Join(ErrUnavailable, err))
	}
	var st storedSet
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, e.Revision(), fmt.Errorf("mapping: decode %s rev %d: %w", key, e.Revision(), err)
	}
	return &st, e.Revision(), nil
}

// write stores v under key if the key's revision is rev (0: absent).
func writeSet(ctx context.Context, kv jetstream.KeyValue, key string, v *storedSet, rev uint64) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("mapping: encode %s: %w", key, err)
	}
	if len(data) > MaxStoredBytes {
		return 0, fmt.Errorf("%w: rule set %s is %d bytes stored, over the %d limit of one NATS message", errBadRequest, key, len(data), MaxStoredBytes)
	}
	var n uint64
	if rev == 0 {
		n, err = kv.Create(ctx, key, data)
	} else {
		n, err = kv.Update(ctx, key, data, rev)
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("mapping: write %s at version %d: %w", key, rev, ErrConflict)
	}
	return 0, fmt.Errorf("mapping: write %s: %w", key, errors.Join(ErrUnavailable, err))
}
