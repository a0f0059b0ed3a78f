package ingest

import (
	"sync"
	"time"
)

// HoldViewForTest stops the watcher of s from applying updates until the
// returned function is called: the replica's view lags behind the stream,
// as it does when its watch is slow.
func (s *Service) HoldViewForTest() (release func()) {
	s.view.gate.Lock()
	return sync.OnceFunc(s.view.gate.Unlock)
}

// ViewWaitersForTest is the number of requests of s waiting for its view to
// catch up with the stream.
func (s *Service) ViewWaitersForTest() int64 { return s.view.waiting.Load() }

// ViewSizesForTest reports the sizes of a tenant's bookkeeping maps: the
// membership revisions and the remembered deletions.
func (s *Service) ViewSizesForTest(tenant string) (memberRevs, tombstones int) {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	if t := s.view.tenant(tenant); t != nil {
		return len(t.memberRev), len(t.deleted)
	}
	return 0, 0
}

// SetTombstoneTTLForTest changes how long s remembers deletions.
func (s *Service) SetTombstoneTTLForTest(d time.Duration) {
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	s.view.tombstoneTTL = d
	for _, t := range s.view.tenants {
		t.tombstoneTTL = d
	}
}
