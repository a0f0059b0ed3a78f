package ingest

import "net/http"

func (s *Service) handleBulk(q *request) {
	s.writeError(q, errf(http.StatusNotImplemented, "", "bulk not implemented yet"))
}
