package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scimcord/scimcord/pkg/eventbus"
)

// DeadLetter is a member whose reconcile failed permanently (a Discord error
// that no retry fixes, such as 50013 or 10011). It stays in the dead-letter
// bucket until a later reconcile of the member succeeds, or an operator
// replays it after fixing the cause.
type DeadLetter struct {
	Status
	Op         string `json:"op"`
	HTTPStatus int    `json:"http_status"`
}

type deadLetters struct{ kv jetstream.KeyValue }

func (d *deadLetters) put(ctx context.Context, dl DeadLetter) error {
	data, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("applier: encode dead letter: %w", err)
	}
	if _, err := d.kv.Put(ctx, eventbus.StatusKey(dl.Tenant, dl.Guild, dl.User), data); err != nil {
		return fmt.Errorf("applier: put dead letter %s/%s/%s: %w", dl.Tenant, dl.Guild, dl.User, err)
	}
	return nil
}

func (d *deadLetters) clear(ctx context.Context, tenant, guild, user string) error {
	err := d.kv.Delete(ctx, eventbus.StatusKey(tenant, guild, user))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// clearIfAny deletes the member's dead letter if there is one (a read,
// and a write only when there is one to delete).
func (d *deadLetters) clearIfAny(ctx context.Context, tenant, guild, user string) error {
	if _, err := d.kv.Get(ctx, eventbus.StatusKey(tenant, guild, user)); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	return d.clear(ctx, tenant, guild, user)
}

func (d *deadLetters) list(ctx context.Context) ([]DeadLetter, error) {
	lister, err := d.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("applier: list dead letters: %w", err)
	}
	var out []DeadLetter
	for k := range lister.Keys() {
		e, err := d.kv.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var dl DeadLetter
		if err := json.Unmarshal(e.Value(), &dl); err == nil {
			out = append(out, dl)
		}
	}
	return out, nil
}

// DeadLetters lists the members whose last reconcile failed permanently.
func (s *Service) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s.dead.list(ctx)
}

// Replay reconciles the dead-lettered members again (after an operator fixed
// the cause), optionally only those of one tenant ("" = all). It returns how
// many are now in sync and the errors of the others.
func (s *Service) Replay(ctx context.Context, tenant string) (int, error) {
	dls, err := s.DeadLetters(ctx)
	if err != nil {
		return 0, err
	}
	ok := 0
	var errs []error
	for _, dl := range dls {
		if tenant != "" && dl.Tenant != tenant {
			continue
		}
		t, found := s.deps.Tenants.Get(dl.Tenant)
		if !found {
			continue
		}
		for _, g := range t.Guilds {
			if g.ID != dl.Guild {
				continue
			}
			if err := s.reconcile(ctx, t, g, dl.User); err != nil {
				errs = append(errs, fmt.Errorf("replay %s/%s/%s: %w", dl.Tenant, dl.Guild, dl.User, err))
				continue
			}
			st, err := s.status.get(ctx, dl.Tenant, dl.Guild, dl.User)
			if err == nil && st.State != StateFailed {
				ok++
			} else if err == nil {
				errs = append(errs, fmt.Errorf("replay %s/%s/%s: still failing: %s", dl.Tenant, dl.Guild, dl.User, strings.TrimSpace(st.Detail)))
			}
		}
	}
	return ok, errors.Join(errs...)
}
