package eventbus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// headerCarrier adapts nats.Header to the OTel TextMapCarrier.
type headerCarrier nats.Header

func (h headerCarrier) Get(k string) string { return nats.Header(h).Get(k) }
func (h headerCarrier) Set(k, v string)     { nats.Header(h).Set(k, v) }
func (h headerCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// propagator is W3C trace context plus baggage.
func propagator() propagation.TextMapPropagator {
	if p := otel.GetTextMapPropagator(); p != nil {
		if len(p.Fields()) > 0 {
			return p
		}
	}
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// InjectTrace writes the trace context of ctx into message headers.
func InjectTrace(ctx context.Context, h nats.Header) {
	propagator().Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx carrying the trace context found in message headers.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator().Extract(ctx, headerCarrier(h))
}
