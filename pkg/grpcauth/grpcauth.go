// Package grpcauth authenticates calls between scimcord's services over gRPC
// with a shared bearer token: clients send it as per-RPC credentials, the
// server checks it in constant time before a protected method runs.
package grpcauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MinTokenLen is the shortest token accepted: a shared secret between
// services is generated, never typed (openssl rand -base64 32).
const MinTokenLen = 16

// ErrShortToken is returned for a token under MinTokenLen characters.
var ErrShortToken = errors.New("grpcauth: the service token must be at least 16 characters")

// Validate reports a token that cannot be used ("" is valid: no authentication).
func Validate(token string) error {
	if token != "" && len(token) < MinTokenLen {
		return ErrShortToken
	}
	return nil
}

// bearer sends "authorization: Bearer <token>" with every call.
type bearer struct{ header string }

// Credentials returns per-RPC credentials that send token. They do not
// require transport security: the services talk plaintext inside the cluster
// network (see services/mapping/README.md), and the token keeps any other
// workload that reaches the port from calling it.
func Credentials(token string) credentials.PerRPCCredentials {
	return bearer{header: "Bearer " + token}
}

// DialOption sends token with every call of a client connection; for ""
// (no authentication configured) it changes nothing.
func DialOption(token string) grpc.DialOption {
	if token == "" {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithPerRPCCredentials(Credentials(token))
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (bearer) RequireTransportSecurity() bool { return false }

// Checker verifies the bearer token of calls to the methods it protects.
type Checker struct {
	sum       [32]byte
	protected func(fullMethod string) bool
}

// NewChecker returns a checker of token for the methods protected reports
// (a full method name: "/package.Service/Method"). Only the token's SHA-256
// is kept.
func NewChecker(token string, protected func(fullMethod string) bool) *Checker {
	return &Checker{sum: sha256.Sum256([]byte(token)), protected: protected}
}

// ServicePrefix protects every method of the named gRPC services.
func ServicePrefix(services ...string) func(string) bool {
	return func(m string) bool {
		for _, s := range services {
			if strings.HasPrefix(m, "/"+s+"/") {
				return true
			}
		}
		return false
	}
}

// errUnauthenticated never says which part was wrong, nor echoes it.
var errUnauthenticated = status.Error(codes.Unauthenticated, "missing or invalid service token (authorization: Bearer …)")

// check authorises a call to fullMethod.
func (c *Checker) check(ctx context.Context, fullMethod string) error {
	if !c.protected(fullMethod) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return errUnauthenticated
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return errUnauthenticated
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], c.sum[:]) != 1 {
		return errUnauthenticated
	}
	return nil
}

// Unary is the server interceptor for unary calls.
func (c *Checker) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := c.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Stream is the server interceptor for streaming calls.
func (c *Checker) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := c.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}
