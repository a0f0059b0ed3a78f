// Package telemetry sets up OpenTelemetry tracing and trace-aware logging
// for one service. Configuration comes in as a Config (read from the standard
// OTEL_* variables at the edge, by FromEnv in a cmd main).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config selects the trace exporter. The zero value exports nothing.
type Config struct {
	// Exporter is "none" (default), "console" (stdouttrace JSON on Console)
	// or "otlp".
	Exporter string
	// OTLPEndpoint overrides OTEL_EXPORTER_OTLP_ENDPOINT (the exporter also reads
	// the standard variables itself).
	OTLPEndpoint string
	// OTLPProtocol is "grpc" (default) or "http/protobuf".
	OTLPProtocol string
	// OTLPInsecure disables TLS for the OTLP endpoint.
	OTLPInsecure bool
	// Console receives console spans (default os.Stdout).
	Console io.Writer
	// Sampler overrides the sampler (default: parent-based, always on).
	Sampler sdktrace.Sampler
	// SpanProcessors are added to the provider (tests use an in-memory recorder).
	SpanProcessors []sdktrace.SpanProcessor
	// ServiceName overrides the service.name given to NewProvider
	// (OTEL_SERVICE_NAME, for the single-service binaries; the all-in-one
	// clears it so that its three providers keep their own names).
	ServiceName string
}

// FromEnv reads the standard OTel variables. Only cmd mains call it.
func FromEnv(getenv func(string) string) Config {
	c := Config{
		Exporter:     strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))),
		OTLPEndpoint: getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
		OTLPProtocol: getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
		ServiceName:  strings.TrimSpace(getenv("OTEL_SERVICE_NAME")),
	}
	if c.OTLPEndpoint == "" {
		c.OTLPEndpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if c.OTLPProtocol == "" {
		c.OTLPProtocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if strings.HasPrefix(c.OTLPEndpoint, "http://") {
		c.OTLPInsecure = true
	}
	if v := strings.ToLower(getenv("OTEL_EXPORTER_OTLP_INSECURE")); v == "true" {
		c.OTLPInsecure = true
	}
	return c
}

// Validate reports an unknown exporter or protocol.
func (c Config) Validate() error {
	switch c.Exporter {
	case "", "none", "console", "otlp":
	default:
		return fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER %q: want otlp, console or none", c.Exporter)
	}
	switch c.OTLPProtocol {
	case "", "grpc", "http/protobuf":
	default:
		return fmt.Errorf("telemetry: OTLP protocol %q: want grpc or http/protobuf", c.OTLPProtocol)
	}
	return nil
}

// Provider is one service's tracer provider.
type Provider struct {
	trace.TracerProvider
	sdk *sdktrace.TracerProvider
}

// Shutdown flushes and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// NewProvider builds the tracer provider of one service. Every service of the
// all-in-one has its own, so each keeps its service.name.
func NewProvider(ctx context.Context, serviceName string, cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{}
	switch cfg.Exporter {
	case "console":
		w := cfg.Console
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("telemetry: console exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case "otlp":
		exp, err := otlpExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if len(cfg.SpanProcessors) == 0 && (cfg.Exporter == "" || cfg.Exporter == "none") {
		// No exporter: still create real span contexts so that trace ids
		// reach responses and logs, but record nothing.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	}
	for _, sp := range cfg.SpanProcessors {
		opts = append(opts, sdktrace.WithSpanProcessor(sp))
	}
	if cfg.Sampler != nil {
		opts = append(opts, sdktrace.WithSampler(cfg.Sampler))
	}
	if cfg.ServiceName != "" {
		serviceName = cfg.ServiceName
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(serviceName)))
	if err != nil {
		res = resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(serviceName))
	}
	opts = append(opts, sdktrace.WithResource(res))
	tp := sdktrace.NewTracerProvider(opts...)
	return &Provider{TracerProvider: tp, sdk: tp}, nil
}

// Noop is a provider that creates no spans.
func Noop() *Provider { return &Provider{TracerProvider: noop.NewTracerProvider()} }

func otlpExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	ep := strings.TrimPrefix(strings.TrimPrefix(cfg.OTLPEndpoint, "http://"), "https://")
	if cfg.OTLPProtocol == "http/protobuf" {
		var o []otlptracehttp.Option
		if ep != "" {
			o = append(o, otlptracehttp.WithEndpoint(ep))
		}
		if cfg.OTLPInsecure {
			o = append(o, otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, o...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp/http exporter: %w", err)
		}
		return exp, nil
	}
	var o []otlptracegrpc.Option
	if ep != "" {
		o = append(o, otlptracegrpc.WithEndpoint(ep))
	}
	if cfg.OTLPInsecure {
		o = append(o, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, o...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp/grpc exporter: %w", err)
	}
	return exp, nil
}

// Propagator is the W3C trace-context + baggage propagator used everywhere.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// ErrNoSpan is returned when a context carries no span.
var ErrNoSpan = errors.New("telemetry: no span in context")
