package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Handler processes one message. It never acks: it returns nil (done),
// an error wrapped by Retry (try again later) or Permanent (never again), or
// any other error, which is retried with the loop's default backoff.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// retryError asks for redelivery after a delay.
type retryError struct {
	err   error
	delay time.Duration
}

func (e *retryError) Error() string { return fmt.Sprintf("retry in %s: %v", e.delay, e.err) }
func (e *retryError) Unwrap() error { return e.err }

// Retry marks err as transient: the message is redelivered after delay.
func Retry(err error, delay time.Duration) error { return &retryError{err: err, delay: delay} }

// permanentError marks an error that redelivery cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix: the message is terminated.
func Permanent(err error) error { return &permanentError{err: err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryDelay returns the delay asked for by Retry, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	// Stream and Durable name the durable pull consumer.
	Stream, Durable string
	// FilterSubjects restricts the consumer (empty: the whole stream).
	FilterSubjects []string
	// Workers is the number of messages handled at once (default 8).
	Workers int
	// AckWait is how long a message may be in flight before redelivery (default 30s).
	AckWait time.Duration
	// Backoff is the delay of the n-th redelivery of a plain error (default 1s doubling to 30s).
	Backoff func(deliveries uint64) time.Duration
	// MaxDeliver bounds redeliveries; -1 (default) is unlimited: nothing is lost.
	MaxDeliver int
	// SpanName names the processing span (default "eventbus.process").
	SpanName string
	Logger   *slog.Logger
	// TracerProvider traces the processing spans (nil: the global provider).
	TracerProvider trace.TracerProvider
	// OnTerm is called when a message is terminated (dead letter).
	OnTerm func(ctx context.Context, msg jetstream.Msg, err error)
	// DrainTimeout bounds how long the messages in flight when ctx ends may
	// run on: after it their handlers' context is cancelled (they return,
	// and the message is redelivered). 0 lets them finish, however long.
	DrainTimeout time.Duration
}

func defaultBackoff(n uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	return d
}

// Consume creates (or updates) the durable consumer and runs h on its
// messages until ctx ends. It is the one place that acks: nil → Ack,
// Retry → NakWithDelay, Permanent → Term, other errors → NakWithDelay with
// backoff. Messages in flight when ctx ends are finished first, within
// cfg.DrainTimeout; Consume returns once their handlers have.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumeConfig, h Handler) error {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Backoff == nil {
		cfg.Backoff = defaultBackoff
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	if cfg.SpanName == "" {
		cfg.SpanName = "eventbus.process"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cc := jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  cfg.Workers * 64,
		FilterSubjects: cfg.FilterSubjects,
	}
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
		if err == nil {
			break
		}
		log.WarnContext(ctx, "consumer not ready, retrying", "stream", cfg.Stream, "durable", cfg.Durable, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Workers * 4))
	if err != nil {
		return fmt.Errorf("eventbus: consume %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	// Handlers outlive ctx (a message in flight is finished, not dropped
	// half-way) until the drain timeout, if any, cancels them.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	if cfg.DrainTimeout > 0 {
		finished := make(chan struct{})
		defer close(finished) // after the workers' wait below (defers run last-in first-out)
		go func() {
			select {
			case <-finished:
				return
			case <-ctx.Done():
			}
			t := time.NewTimer(cfg.DrainTimeout)
			defer t.Stop()
			select {
			case <-t.C:
				hcancel()
			case <-finished:
			}
		}()
	}
	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range work {
				handleOne(hctx, cfg, log, h, msg)
			}
		}()
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			log.WarnContext(ctx, "consumer fetch failed", "durable", cfg.Durable, "error", err)
			continue
		}
		select {
		case work <- msg:
		case <-ctx.Done():
			// Not handled: JetStream redelivers it after AckWait, or to the next consumer.
			_ = msg.Nak()
			return nil
		}
	}
}

func handleOne(ctx context.Context, cfg ConsumeConfig, log *slog.Logger, h Handler, msg jetstream.Msg) {
	ctx = ExtractTrace(ctx, msg.Headers())
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	ctx, span := tp.Tracer("github.com/scimcord/scimcord/pkg/eventbus").Start(ctx, cfg.SpanName, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject())))
	defer span.End()
	var deliveries uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		deliveries = md.NumDelivered
		span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(md.Sequence.Stream)),
			attribute.Int64("messaging.nats.delivered", int64(md.NumDelivered)))
	}
	err := h(ctx, msg)
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			log.WarnContext(ctx, "ack failed", "subject", msg.Subject(), "error", aerr)
		}
	case IsPermanent(err):
		span.RecordError(err)
		log.ErrorContext(ctx, "message terminated", "subject", msg.Subject(), "error", err)
		if cfg.OnTerm != nil {
			cfg.OnTerm(ctx, msg, err)
		}
		_ = msg.Term()
	default:
		span.RecordError(err)
		delay, ok := RetryDelay(err)
		if !ok {
			delay = cfg.Backoff(deliveries)
		}
		log.WarnContext(ctx, "message will be retried", "subject", msg.Subject(), "error", err,
			"delay", delay, "deliveries", deliveries)
		_ = msg.NakWithDelay(delay)
	}
}
