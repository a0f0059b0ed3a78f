package grpcauth_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/scimcord/scimcord/pkg/grpcauth"
)

const token = "0123456789abcdef-service-token"

// serve runs a real gRPC server on loopback whose health service is
// protected by the token and whose reflection service is not.
func serve(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := grpcauth.NewChecker(token, grpcauth.ServicePrefix(healthpb.Health_ServiceDesc.ServiceName))
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(c.Unary()), grpc.ChainStreamInterceptor(c.Stream()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctx(t *testing.T, md ...string) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if len(md) > 0 {
		c = metadata.AppendToOutgoingContext(c, md...)
	}
	return c
}

func TestChecker(t *testing.T) {
	t.Parallel()
	addr := serve(t)
	plain := dial(t, addr)
	for _, tc := range []struct {
		name string
		conn *grpc.ClientConn
		md   []string
		want codes.Code
	}{
		{"the right token as per-RPC credentials is let in", dial(t, addr, grpc.WithPerRPCCredentials(grpcauth.Credentials(token))), nil, codes.OK},
		{"the right token as a dial option is let in", dial(t, addr, grpcauth.DialOption(token)), nil, codes.OK},
		{"the dial option of an empty token sends none", dial(t, addr, grpcauth.DialOption("")), nil, codes.Unauthenticated},
		{"the scheme is case-insensitive", plain, []string{"authorization", "bearer " + token}, codes.OK},
		{"no token is refused", plain, nil, codes.Unauthenticated},
		{"a wrong token is refused", dial(t, addr, grpc.WithPerRPCCredentials(grpcauth.Credentials("not-the-service-token"))), nil, codes.Unauthenticated},
		{"a token that is a prefix of the right one is refused", plain, []string{"authorization", "Bearer " + token[:20]}, codes.Unauthenticated},
		{"another scheme is refused", plain, []string{"authorization", "Basic " + token}, codes.Unauthenticated},
		{"the token without a scheme is refused", plain, []string{"authorization", token}, codes.Unauthenticated},
		{"two authorization values are refused", plain, []string{"authorization", "Bearer " + token, "authorization", "Bearer x"}, codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := healthpb.NewHealthClient(tc.conn).Check(ctx(t, tc.md...), &healthpb.HealthCheckRequest{})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("Check: %v (code %v), want %v", err, got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), token[:8]) {
				t.Fatalf("the error echoes the token: %v", err)
			}
		})
	}

	t.Run("a stream without the token is refused", func(t *testing.T) {
		t.Parallel()
		w, err := healthpb.NewHealthClient(plain).Watch(ctx(t), &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Watch: %v, want Unauthenticated", err)
		}
	})

	t.Run("an unprotected service needs no token", func(t *testing.T) {
		t.Parallel()
		st, err := reflectionpb.NewServerReflectionClient(plain).ServerReflectionInfo(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("reflection without a token: %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"", true}, {"short", false}, {strings.Repeat("x", grpcauth.MinTokenLen), true}} {
		if err := grpcauth.Validate(tc.token); (err == nil) != tc.ok {
			t.Errorf("Validate(%d chars): %v, want ok=%v", len(tc.token), err, tc.ok)
		}
	}
}
