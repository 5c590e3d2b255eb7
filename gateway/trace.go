package gateway

import (
	"context"
	"net/http"

	"github.com/obol/obol/internal/apierr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceparent carries W3C trace context in and out.
var traceparent = propagation.TraceContext{}

// startSpan opens a request's server span, continuing the client's trace
// when it sent a traceparent.
//
// With tracing off and no traceparent it costs next to nothing: the
// request keeps its context. A traceparent is still passed on to the
// backends when tracing is off here.
func (s *Server) startSpan(r *http.Request, route string) (*http.Request, trace.Span) {
	ctx := r.Context()
	if r.Header.Get("Traceparent") != "" {
		ctx = traceparent.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, span := s.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
	if !span.IsRecording() && !span.SpanContext().IsValid() {
		return r, span
	}
	span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route))
	return r.WithContext(ctx), span
}

// endSpan writes what the request came to on its span: status, the
// GenAI attributes of a chat, and the request id to find its log line.
func endSpan(span trace.Span, c *call, status int, code apierr.Code) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{
		attribute.Int("http.response.status_code", status),
		attribute.String("obol.request_id", c.ID),
	}
	if c.key != nil {
		attrs = append(attrs, attribute.String("obol.key_id", c.key.ID), attribute.String("obol.tier", c.key.Tier))
	}
	if c.model != "" {
		attrs = append(attrs, attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", c.model))
	}
	if c.backend != "" {
		attrs = append(attrs, attribute.String("gen_ai.response.model", c.model), attribute.String("obol.backend", c.backend))
	}
	if c.usage != nil {
		attrs = append(attrs, attribute.Int("gen_ai.usage.input_tokens", c.usage.PromptTokens),
			attribute.Int("gen_ai.usage.output_tokens", c.usage.CompletionTokens))
	}
	if len(c.Finish) > 0 {
		attrs = append(attrs, attribute.StringSlice("gen_ai.response.finish_reasons", c.Finish))
	}
	if c.outcome != "" {
		attrs = append(attrs, attribute.String("obol.stream_outcome", c.outcome))
	}
	span.SetAttributes(attrs...)
	if status >= 500 {
		span.SetStatus(codes.Error, string(code))
	}
	span.End()
}

// child opens a span under the request's, when that one is recorded.
func (s *Server) child(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return s.tracer.Start(ctx, name)
}

// noSpan is a span that records nothing.
var noSpan = trace.SpanFromContext(context.Background())

func defaultTracer(t trace.Tracer) trace.Tracer {
	if t != nil {
		return t
	}
	return otel.Tracer("github.com/obol/obol/gateway")
}
