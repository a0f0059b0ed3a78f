// Package eventbus is the JetStream plumbing shared by the services: the
// resource store whose writes are events, trace propagation through message
// headers, and the consumer loop that maps handler errors to acks.
package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/scimcord/scimcord/pkg/gen/scimcord/event/v1"
)

// Sentinel errors of the store.
var (
	// ErrConflict means the record changed since it was read (compare-and-set failed),
	// or a create found the key already present.
	ErrConflict = errors.New("eventbus: revision conflict")
	// ErrNotFound means there is no record under the key.
	ErrNotFound = errors.New("eventbus: not found")
	// ErrUnavailable means JetStream did not confirm the write or read.
	ErrUnavailable = errors.New("eventbus: jetstream unavailable")
	// ErrInvalidKey means the key (or filter) is too long or holds characters
	// a key cannot have; nothing was sent. Get also wraps ErrNotFound with it
	// (no record can be stored under such a key).
	ErrInvalidKey = errors.New("eventbus: invalid key")
)

// BucketConfig sets the replicas and storage of the buckets the services create.
type BucketConfig struct {
	// Replicas of each bucket's stream (1 embedded, 3 on a cluster).
	Replicas int
	// Memory keeps the buckets in memory instead of on disk (tests only).
	Memory bool
}

// EnsureBuckets creates (or updates) the resource and status buckets.
func EnsureBuckets(ctx context.Context, js jetstream.JetStream, cfg BucketConfig) error {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	for _, b := range []string{ResourceBucket, StatusBucket} {
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   b,
			History:  1,
			Storage:  storage,
			Replicas: cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("eventbus: ensure bucket %s: %w", b, err)
		}
	}
	return nil
}

// Store reads and writes resource records. Each write is one JetStream
// message on the resource stream: the record and the event are the same thing.
type Store struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	tracer trace.Tracer
}

// WithTracerProvider returns a copy of the store whose writes are traced as
// producer spans of tp (the writing service's provider).
func (s *Store) WithTracerProvider(tp trace.TracerProvider) *Store {
	c := *s
	c.tracer = tp.Tracer("github.com/scimcord/scimcord/pkg/eventbus")
	return &c
}

// OpenStore opens the resource bucket (created by EnsureBuckets).
func OpenStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, ResourceBucket)
	if err != nil {
		return nil, fmt.Errorf("eventbus: open bucket %s: %w", ResourceBucket, errors.Join(ErrUnavailable, err))
	}
	return &Store{js: js, kv: kv, tracer: otel.Tracer("github.com/scimcord/scimcord/pkg/eventbus")}, nil
}

// KV exposes the underlying bucket (for watches and key listings).
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// Record is a stored event with its revision (the stream sequence).
type Record struct {
	Key      string
	Event    *eventv1.Event
	Revision uint64
}

// Get reads the current record under key. A key that is not ValidKey is
// never sent: the error wraps ErrInvalidKey and ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (Record, error) {
	if err := checkKey("get", key); err != nil {
		return Record{}, errors.Join(err, ErrNotFound)
	}
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Record{}, fmt.Errorf("eventbus: get %s: %w", key, ErrNotFound)
		}
		return Record{}, fmt.Errorf("eventbus: get %s: %w", key, errors.Join(ErrUnavailable, err))
	}
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(e.Value(), ev); err != nil {
		return Record{}, fmt.Errorf("eventbus: decode %s rev %d: %w", key, e.Revision(), err)
	}
	return Record{Key: key, Event: ev, Revision: e.Revision()}, nil
}

// Put writes ev under key if the key's current revision is expectedRev (0:
// the key must not exist). The trace context of ctx travels in the message
// headers. It returns the new revision, ErrConflict on a lost race, or an
// error wrapping ErrUnavailable when JetStream did not acknowledge the write —
// in which case the caller must not report success. A key that is not
// ValidKey is refused with ErrInvalidKey before anything is sent.
func (s *Store) Put(ctx context.Context, key string, ev *eventv1.Event, expectedRev uint64) (uint64, error) {
	if err := checkKey("put", key); err != nil {
		return 0, err
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("eventbus: encode %s: %w", key, err)
	}
	msg := nats.NewMsg(ResourceSubjectPrefix + key)
	msg.Data = data
	tr := s.tracer
	if tr == nil {
		tr = otel.Tracer("github.com/scimcord/scimcord/pkg/eventbus")
	}
	ctx, span := tr.Start(ctx, "publish "+ResourceStream, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "publish"),
			attribute.String("messaging.destination.name", ResourceSubjectPrefix+key),
			attribute.Int64("scimcord.expected_revision", int64(expectedRev))))
	defer span.End()
	InjectTrace(ctx, msg.Header)
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(expectedRev))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("eventbus: put %s at rev %d: %w", key, expectedRev, ErrConflict)
		}
		return 0, fmt.Errorf("eventbus: put %s: %w", key, errors.Join(ErrUnavailable, err))
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)))
	return ack.Sequence, nil
}

// ListKeys lists the keys matching a subject filter (such as
// GroupMembersFilter) that currently hold a record. A filter that is not
// ValidFilter is refused with ErrInvalidKey before anything is sent.
func (s *Store) ListKeys(ctx context.Context, filter string) ([]string, error) {
	if !ValidFilter(filter) {
		return nil, fmt.Errorf("eventbus: list: %w: filter %s", ErrInvalidKey, describeKey(filter))
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("eventbus: list %s: %w", filter, errors.Join(ErrUnavailable, err))
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Now is the time source of new events (overridable in tests).
var Now = time.Now
