package mapping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/services/mapping/internal/rules"
)

// Actions of a GuildPlan.
const (
	ActionCreate    = "create"
	ActionUpdate    = "update"
	ActionDelete    = "delete"
	ActionUnchanged = "unchanged"
	// ActionRefuse: the file is older than the stored generation, or has the
	// stored generation with different rules. ApplyFile writes nothing while
	// any guild is refused.
	ActionRefuse = "refuse"
)

// FilePlan is what applying a rules file would change, guild by guild, with
// the blast radius of each change. Build it with PreviewFile, print it with
// WriteText, and apply it with ApplyFile.
type FilePlan struct {
	Bucket string
	// Generation is the rules file's generation, stored with every rule set written.
	Generation int64
	Guilds     []GuildPlan
}

// GuildPlan is the change to one guild's rule set.
type GuildPlan struct {
	Tenant, Guild string
	Action        string
	// CurrentVersion is the stored version the plan replaces (0: none); ApplyFile
	// writes only if it is still current.
	CurrentVersion uint64
	CurrentSource  string
	// CurrentGeneration is the stored rule set's rules-file generation.
	CurrentGeneration int64
	// Refusal says why the guild is refused (Action == ActionRefuse).
	Refusal string
	refusal error
	Preview *PreviewReport
	spec    *rules.GuildSpec
}

// PreviewFile validates the rules file at path and reports, against the rule
// sets stored in bucket and the SCIM state in JetStream, what applying it
// would change: the `--dry-run` of `mapping apply`. Rule sets that the file
// no longer lists are deleted only if they came from a rules file.
func PreviewFile(ctx context.Context, js jetstream.JetStream, bucket, path string) (*FilePlan, error) {
	f, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		kv = nil
	case err != nil:
		return nil, fmt.Errorf("mapping: open bucket %s: %w", bucket, errors.Join(ErrUnavailable, err))
	}
	plan := &FilePlan{Bucket: bucket, Generation: f.Generation}
	members := map[string][]*scimMember{}
	tenantMembers := func(t string) ([]*scimMember, error) {
		if m, ok := members[t]; ok {
			return m, nil
		}
		m, err := loadMembers(ctx, js, t)
		members[t] = m
		return m, err
	}
	current := func(key string) (*storedSet, uint64, error) {
		if kv == nil {
			return nil, 0, nil
		}
		return readSet(ctx, kv, key)
	}
	compileStored := func(t string, st *storedSet, rev uint64) *rules.RuleSet {
		if st == nil || st.Deleted {
			return nil
		}
		st.Rules.ID = st.Guild
		rs, err := rules.Compile(t, rev, &st.Rules)
		if err != nil {
			return nil
		}
		return rs
	}
	inFile := map[string]bool{}
	for _, t := range f.Tenants {
		for i := range t.Guilds {
			g := &t.Guilds[i]
			key := setKeyString(t.ID, g.ID)
			inFile[key] = true
			st, rev, err := current(key)
			if err != nil {
				return nil, err
			}
			gp := GuildPlan{Tenant: t.ID, Guild: g.ID, CurrentVersion: rev, spec: g}
			src := fileSource(g)
			switch d := decideFile(st, f.Generation, src); {
			case d == fileOlder || d == fileConflict:
				gp.Action, gp.refusal = ActionRefuse, generationError(key, st, rev, f.Generation, d)
				gp.Refusal = gp.refusal.Error()
			case st == nil || st.Deleted:
				gp.Action = ActionCreate
			case d == fileSame || (d == fileAPI && sameRules(&st.Rules, g)):
				gp.Action = ActionUnchanged
			default:
				gp.Action = ActionUpdate // also: the same rules, recorded at the newer generation
			}
			if st != nil {
				gp.CurrentSource, gp.CurrentGeneration = st.Source, st.Generation
			}
			proposed, err := rules.Compile(t.ID, 0, g)
			if err != nil {
				return nil, err
			}
			ms, err := tenantMembers(t.ID)
			if err != nil {
				return nil, err
			}
			gp.Preview = previewSets(ctx, t.ID, g.ID, compileStored(t.ID, st, rev), proposed, ms)
			plan.Guilds = append(plan.Guilds, gp)
		}
	}
	if kv != nil {
		lister, err := kv.ListKeys(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, fmt.Errorf("mapping: list bucket %s: %w", bucket, errors.Join(ErrUnavailable, err))
		}
		var stale []string
		if lister != nil {
			for k := range lister.Keys() {
				if !inFile[k] {
					stale = append(stale, k)
				}
			}
		}
		for _, k := range stale {
			st, rev, err := readSet(ctx, kv, k)
			if err != nil {
				return nil, err
			}
			d := decideFile(st, f.Generation, "")
			if d != fileWrite && d != fileOlder && d != fileConflict {
				continue
			}
			ms, err := tenantMembers(st.Tenant)
			if err != nil {
				return nil, err
			}
			gp := GuildPlan{Tenant: st.Tenant, Guild: st.Guild, Action: ActionDelete, CurrentVersion: rev, CurrentSource: st.Source, CurrentGeneration: st.Generation}
			if d != fileWrite {
				gp.Action, gp.refusal = ActionRefuse, generationError(k, st, rev, f.Generation, d)
				gp.Refusal = gp.refusal.Error()
			}
			gp.Preview = previewSets(ctx, st.Tenant, st.Guild, compileStored(st.Tenant, st, rev), nil, ms)
			plan.Guilds = append(plan.Guilds, gp)
		}
	}
	return plan, nil
}

func sameRules(a, b *rules.GuildSpec) bool {
	x, y := *a, *b
	x.ID, y.ID = "", ""
	return fileSource(&x) == fileSource(&y)
}

// ApplyFile writes a plan: each changed rule set is written only if its
// version is still the one the plan previewed (ErrConflict otherwise: preview
// again). The running replicas pick the new versions up from their watch.
// A plan with a refused guild (ErrGeneration) writes nothing. The writes are
// guild by guild, not one transaction: if one fails, the guilds before it are
// written and the rest are not (run it again: written guilds are unchanged).
func ApplyFile(ctx context.Context, js jetstream.JetStream, plan *FilePlan) error {
	var refused []error
	for _, gp := range plan.Guilds {
		if gp.Action == ActionRefuse {
			refused = append(refused, gp.refusal)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("mapping: apply refused, nothing written: %w", errors.Join(refused...))
	}
	var kv jetstream.KeyValue
	var err error
	for i := range plan.Guilds {
		gp := &plan.Guilds[i]
		if gp.Action == ActionUnchanged {
			continue
		}
		if kv == nil {
			if kv, err = js.KeyValue(ctx, plan.Bucket); err != nil {
				return fmt.Errorf("mapping: open bucket %s (start the mapping service once to create it): %w", plan.Bucket, errors.Join(ErrUnavailable, err))
			}
		}
		key := setKeyString(gp.Tenant, gp.Guild)
		var st *storedSet
		if gp.Action == ActionDelete {
			cur, _, err := readSet(ctx, kv, key)
			if err != nil || cur == nil {
				return fmt.Errorf("mapping: delete %s: %w", key, errors.Join(ErrConflict, err))
			}
			cur.Deleted, cur.Source, cur.UpdatedAt, cur.Generation = true, "file:removed", time.Now().UTC(), plan.Generation
			st = cur
		} else {
			st = &storedSet{Tenant: gp.Tenant, Guild: gp.Guild, Source: fileSource(gp.spec), Generation: plan.Generation, UpdatedAt: time.Now().UTC(), Rules: *gp.spec}
		}
		if _, err := writeSet(ctx, kv, key, st, gp.CurrentVersion); err != nil {
			return fmt.Errorf("mapping: apply %s %s: %w", gp.Action, key, err)
		}
	}
	return nil
}

// WriteText prints the plan for a person.
func (p *FilePlan) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, gp := range p.Guilds {
		fmt.Fprintf(&b, "tenant %s guild %s: %s", gp.Tenant, gp.Guild, gp.Action)
		if gp.CurrentVersion > 0 {
			fmt.Fprintf(&b, " (version %d, from %s, generation %d)", gp.CurrentVersion, sourceLabel(gp.CurrentSource), gp.CurrentGeneration)
		}
		b.WriteString("\n")
		if gp.Refusal != "" {
			fmt.Fprintf(&b, "  refused: %s\n", gp.Refusal)
		}
		rep := gp.Preview
		if rep == nil {
			continue
		}
		fmt.Fprintf(&b, "  members scanned: %d, changing: %d\n", rep.MembersScanned, len(rep.Changes))
		if len(rep.Unresolvable) > 0 {
			fmt.Fprintf(&b, "  members whose stored SCIM user is not a JSON object (not resolvable, left out): %s\n", strings.Join(rep.Unresolvable, ", "))
		}
		for _, r := range rep.Roles {
			fmt.Fprintf(&b, "  role %s: +%d -%d\n", r.Role, r.Gained, r.Lost)
		}
		for _, r := range rep.NewlyManaged {
			fmt.Fprintf(&b, "  role %s becomes managed: members holding it without a rule lose it\n", r)
		}
		for _, r := range rep.Unmanaged {
			fmt.Fprintf(&b, "  role %s is no longer managed: members keep it\n", r)
		}
		for _, c := range rep.Changes {
			fmt.Fprintf(&b, "  %s (%s, discord %s):", c.UserID, c.UserName, orDash(c.DiscordUserID))
			for _, r := range c.Gained {
				fmt.Fprintf(&b, " +%s", r)
			}
			for _, r := range c.Lost {
				fmt.Fprintf(&b, " -%s", r)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sourceLabel(src string) string {
	if strings.HasPrefix(src, "file:") && len(src) > 17 {
		return "rules file " + src[5:17]
	}
	return src
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
