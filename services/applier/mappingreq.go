package applier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What the applier sends mapping is bounded on purpose. A gRPC server
// accepts 4 MiB per message by default (mapping keeps the default), and a
// request over it is refused with ResourceExhausted on every retry. Mapping
// needs the groups and, for attribute rules, the SCIM user; a user record
// larger than maxUserJSON (in practice photos as data URIs, certificates,
// huge extension values) is sent without its strings longer than
// maxAttrString — no role rule compares such values, and a rule naming a
// dropped attribute does not match (mapping's Explain says the attribute is
// missing). A request that is still too large is a permanent failure of that
// member (status failed + dead letter), never a retry loop.
const (
	maxMappingRequest = 4<<20 - 64<<10 // below gRPC's default 4 MiB receive limit
	maxUserJSON       = 1 << 20
	maxAttrString     = 4 << 10
)

// ErrMappingRequestTooLarge means a member's ResolveRoles request would be
// larger than mapping accepts, even without the user's long attributes.
var ErrMappingRequestTooLarge = errors.New("applier: request to mapping too large")

// mappingUserJSON returns the SCIM user to send mapping: the snapshot as is
// when it is at most maxUserJSON bytes, else the snapshot without its long
// strings (dropped counts them). A user still over maxUserJSON is refused
// with ErrMappingRequestTooLarge.
func mappingUserJSON(snapshot []byte) (out []byte, dropped int, err error) {
	if len(snapshot) <= maxUserJSON {
		return snapshot, 0, nil
	}
	dec := json.NewDecoder(bytes.NewReader(snapshot))
	dec.UseNumber() // keep numbers exactly as they were
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, 0, fmt.Errorf("%w: the user record is %d bytes of invalid JSON (limit %d)", ErrMappingRequestTooLarge, len(snapshot), maxUserJSON)
	}
	v = dropLongStrings(v, &dropped)
	out, err = json.Marshal(v)
	if err != nil {
		return nil, dropped, fmt.Errorf("applier: re-encode the user record: %w", err)
	}
	if len(out) > maxUserJSON {
		return nil, dropped, fmt.Errorf("%w: the user record is %d bytes, %d without its %d attribute values longer than %d bytes (limit %d)",
			ErrMappingRequestTooLarge, len(snapshot), len(out), dropped, maxAttrString, maxUserJSON)
	}
	return out, dropped, nil
}

// dropLongStrings removes every string longer than maxAttrString: object
// members and array elements.
func dropLongStrings(v any, dropped *int) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && len(s) > maxAttrString {
				delete(x, k)
				*dropped++
				continue
			}
			x[k] = dropLongStrings(e, dropped)
		}
		return x
	case []any:
		out := x[:0]
		for _, e := range x {
			if s, ok := e.(string); ok && len(s) > maxAttrString {
				*dropped++
				continue
			}
			out = append(out, dropLongStrings(e, dropped))
		}
		return out
	}
	return v
}

// mappingRefused reports a mapping error that no retry fixes for this
// member: the request itself is wrong, too large or not supported, or
// mapping has no rules for it. Unavailable, DeadlineExceeded, Aborted,
// Internal, Unknown and the like are transient (retried with backoff);
// Unauthenticated and PermissionDenied concern every member and are fixed in
// the deployment, so they are retried too (with backoff, capped).
func mappingRefused(err error) bool {
	if errors.Is(err, ErrMappingRequestTooLarge) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case grpccodes.InvalidArgument, grpccodes.NotFound, grpccodes.FailedPrecondition, grpccodes.OutOfRange,
		grpccodes.ResourceExhausted, grpccodes.Unimplemented:
		return true
	}
	return false
}
