package applier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func replicaID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// heartbeatLoop announces this replica in the replica bucket (its entries
// expire after ReplicaTTL) and sets the limiter's share to 1/N of the bot's
// limits, N being the number of live replicas. When a replica dies its key
// expires and the others take its share back.
func (s *Service) heartbeatLoop(ctx context.Context) {
	every := s.cfg.ReplicaTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.replicas.Put(ctx, s.id, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "replica heartbeat failed", "error", err)
		}
		n := s.liveReplicas(ctx)
		if old := s.limiter.SetShare(n); old != n {
			s.log.InfoContext(ctx, "replicas share the Discord limits", "replicas", n)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = s.replicas.Delete(dctx, s.id) // leave at once on a clean stop
			cancel()
			return
		case <-t.C:
		}
	}
}

func (s *Service) liveReplicas(ctx context.Context) int {
	lister, err := s.replicas.ListKeys(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0 // unknown: keep the current share
		}
		return 1
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return max(n, 1)
}
