package ingest

import "sync"

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
