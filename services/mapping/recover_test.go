package mapping

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPanickingHandlerAnswersInternalAndIsCounted(t *testing.T) {
	t.Parallel()
	s := &Service{log: slog.New(slog.DiscardHandler)}
	_, err := s.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/m/Unary"}, func(context.Context, any) (any, error) {
		var m map[string]int
		m["x"] = 1 // a real nil-map panic
		return nil, nil
	})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "/m/Unary") {
		t.Errorf("unary panic = %v, want Internal", err)
	}
	err = s.recoverStream(nil, ctxStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/m/Stream"}, func(any, grpc.ServerStream) error {
		var p *Service
		_ = p.cfg // nil dereference
		return nil
	})
	if status.Code(err) != codes.Internal {
		t.Errorf("stream panic = %v, want Internal", err)
	}
	rec := httptest.NewRecorder()
	s.rules = newRegistry()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "scimcord_mapping_grpc_panics_total 2\n") {
		t.Errorf("metrics:\n%s", rec.Body.String())
	}
}

// ctxStream is a server stream that only has a context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }
