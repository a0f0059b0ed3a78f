package mapping

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	mappingv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/mapping/v1"
	"github.com/scimcord/scimcord/pkg/grpcauth"
	"github.com/scimcord/scimcord/pkg/telemetry"
)

// LivenessService is the gRPC health service name that is SERVING as long as
// the server runs, for liveness and startup probes; "" and the MappingService
// name turn SERVING only once the rules are loaded (readiness).
const LivenessService = "liveness"

// Run serves gRPC (MappingService, health, reflection) until ctx ends, then
// stops gracefully within ShutdownTimeout. With a JetStream it first makes
// sure the rules bucket exists, seeds it from the rules file and watches it.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("mapping: listen on %s: %w", s.cfg.GRPCAddr, err)
	}
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.mu.Unlock()

	// No TLS: the port must stay inside the cluster (the Helm chart's
	// NetworkPolicy admits only ingest and the applier). With a Token every
	// MappingService call must carry it; health and reflection stay open.
	unary := []grpc.UnaryServerInterceptor{s.recoverUnary}
	stream := []grpc.StreamServerInterceptor{s.recoverStream}
	if s.cfg.Token != "" {
		c := grpcauth.NewChecker(s.cfg.Token, grpcauth.ServicePrefix(mappingv1.MappingService_ServiceDesc.ServiceName))
		unary, stream = append(unary, c.Unary()), append(stream, c.Stream())
	} else {
		s.log.WarnContext(ctx, "mapping gRPC has no authentication: anyone who reaches the port can rewrite the rules; set SCIMCORD_MAPPING_TOKEN")
	}
	srv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(s.tp), otelgrpc.WithPropagators(telemetry.Propagator()))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
	hs := health.NewServer()
	hs.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(mappingv1.MappingService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	mappingv1.RegisterMappingServiceServer(srv, &server{s: s})

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()

	watchErr := make(chan error, 1)
	if s.js != nil {
		go func() { watchErr <- s.runStore(ctx) }()
	} else {
		s.markReady()
	}

	// Serving once the rule sets are loaded.
	go func() {
		select {
		case <-s.ready:
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(mappingv1.MappingService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
			s.log.InfoContext(ctx, "mapping service serving", "addr", s.Addr(), "rule_sets", len(s.rules.all()))
		case <-ctx.Done():
		}
	}()

	var runErr error
	watchDone := s.js == nil
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("mapping: grpc serve on %s: %w", s.Addr(), err)
	case err := <-watchErr:
		watchDone = true
		if err != nil && ctx.Err() == nil {
			runErr = err
		}
	}
	cancel()
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("mapping graceful stop timed out, closing connections", "timeout", s.cfg.ShutdownTimeout)
		srv.Stop()
		<-stopped
	}
	if !watchDone {
		// The watcher ends with ctx.
		if err := <-watchErr; err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	}
	return runErr
}
