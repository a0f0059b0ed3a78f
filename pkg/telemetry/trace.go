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
	// OTLPEndpoint is the base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): a URL
	// (http://host:4318; for http/protobuf "/v1/traces" is appended to its
	// path, as the OTel spec says) or host:port. The exporter also reads the
	// standard variables itself.
	OTLPEndpoint string
	// OTLPTracesEndpoint is the signal-specific endpoint
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): a full URL used as is (for
	// http/protobuf it includes the path, such as /v1/traces). It wins over
	// OTLPEndpoint.
	OTLPTracesEndpoint string
	// OTLPProtocol is "grpc" (default) or "http/protobuf".
	OTLPProtocol string
	// OTLPInsecure disables TLS for the OTLP endpoint.
	OTLPInsecure bool
	// Console receives console spans (default os.Stdout).
	Console io.Writer
	// Sampler overrides the sampler. Default (EnvSampler empty): EdgeSampler —
	// every span is sampled, even under a remote parent that was not (an
	// IdP's traceparent with flags 00), so that the trace id a SCIM response
	// names is always exported.
	Sampler sdktrace.Sampler
	// EnvSampler is OTEL_TRACES_SAMPLER; when set, the SDK's own reading of
	// the sampling variables (OTEL_TRACES_SAMPLER, _ARG) decides instead.
	EnvSampler string
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
		Exporter:           strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))),
		OTLPEndpoint:       strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")),
		OTLPTracesEndpoint: strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
		OTLPProtocol:       getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
		ServiceName:        strings.TrimSpace(getenv("OTEL_SERVICE_NAME")),
		EnvSampler:         strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")),
	}
	if c.OTLPProtocol == "" {
		c.OTLPProtocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if strings.HasPrefix(c.OTLPEndpoint, "http://") || strings.HasPrefix(c.OTLPTracesEndpoint, "http://") {
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
	if cfg.Sampler == nil && (cfg.EnvSampler == "" || (len(cfg.SpanProcessors) == 0 && (cfg.Exporter == "" || cfg.Exporter == "none"))) {
		// Without an exporter this still creates real span contexts, so that
		// trace ids reach responses and logs (nothing is recorded).
		opts = append(opts, sdktrace.WithSampler(EdgeSampler()))
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

// EdgeSampler samples every span, also under a remote parent that was not
// sampled: scimcord is the edge of its traces (the IdP's traceparent is only
// a correlation hint), and the traceresponse header and the sync status name
// a trace id that must be found in the backend. A sampled remote parent and
// local parents are followed as usual. Set OTEL_TRACES_SAMPLER to choose
// another (for example parentbased_traceidratio to sample less).
func EdgeSampler() sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.AlwaysSample(), sdktrace.WithRemoteParentNotSampled(sdktrace.AlwaysSample()))
}

// Noop is a provider that creates no spans.
func Noop() *Provider { return &Provider{TracerProvider: noop.NewTracerProvider()} }

func otlpExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	// The signal-specific URL is used as is (WithEndpointURL); the base is a
	// URL (http/protobuf: "/v1/traces" appended to its path) or host:port.
	url, hostport := cfg.OTLPTracesEndpoint, ""
	if url == "" && cfg.OTLPEndpoint != "" {
		if strings.Contains(cfg.OTLPEndpoint, "://") {
			url = cfg.OTLPEndpoint
			if cfg.OTLPProtocol == "http/protobuf" {
				url = strings.TrimRight(url, "/") + "/v1/traces"
			}
		} else {
			hostport = cfg.OTLPEndpoint
		}
	}
	if url != "" && !strings.Contains(url, "://") {
		url, hostport = "", url // a host:port in the traces variable
	}
	if cfg.OTLPProtocol == "http/protobuf" {
		var o []otlptracehttp.Option
		switch {
		case url != "":
			o = append(o, otlptracehttp.WithEndpointURL(url))
		case hostport != "":
			o = append(o, otlptracehttp.WithEndpoint(hostport))
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
	switch {
	case url != "":
		o = append(o, otlptracegrpc.WithEndpointURL(url))
	case hostport != "":
		o = append(o, otlptracegrpc.WithEndpoint(hostport))
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
