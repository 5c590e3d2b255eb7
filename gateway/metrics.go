package gateway

import (
	"context"
	"io"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// metrics are the gateway's instruments. Their attributes are bounded:
// route templates (never raw paths), known model names, tiers, status
// codes; never a key id.
type metrics struct {
	duration metric.Float64Histogram   // http.server.request.duration
	active   metric.Int64UpDownCounter // http.server.active_requests
	streams  metric.Int64UpDownCounter // obol.streams.active
	tokens   metric.Int64Histogram     // gen_ai.client.token.usage
	ttft     metric.Float64Histogram   // gen_ai.server.time_to_first_token
	overhead metric.Float64Histogram   // obol.gateway.overhead
	quota    metric.Int64Counter       // obol.quota.decisions
	authFail metric.Int64Counter       // obol.auth.failures

	sets sync.Map // attrKey → metric.MeasurementOption
}

var (
	secondsBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	overheadBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304}
)

func newMetrics(m metric.Meter) *metrics {
	if m == nil {
		m = otel.Meter("github.com/obol/obol/gateway")
	}
	var ms metrics
	ms.duration, _ = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP requests, by route template and status"),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	ms.active, _ = m.Int64UpDownCounter("http.server.active_requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests in flight"))
	ms.streams, _ = m.Int64UpDownCounter("obol.streams.active", metric.WithUnit("{stream}"),
		metric.WithDescription("SSE streams open to clients"))
	ms.tokens, _ = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens per request, by model and type (input, output)"),
		metric.WithExplicitBucketBoundaries(tokenBuckets...))
	ms.ttft, _ = m.Float64Histogram("gen_ai.server.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("Time from a streamed request's arrival to its first token sent"),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	ms.overhead, _ = m.Float64Histogram("obol.gateway.overhead", metric.WithUnit("s"),
		metric.WithDescription("A request's time in the gateway itself: its duration less the time waiting on the backend"),
		metric.WithExplicitBucketBoundaries(overheadBuckets...))
	ms.quota, _ = m.Int64Counter("obol.quota.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Admissions, by tier, the limit that decided, and outcome (allowed, denied, too_large, error)"))
	ms.authFail, _ = m.Int64Counter("obol.auth.failures", metric.WithUnit("{request}"),
		metric.WithDescription("Requests with a bad API key or admin token"))
	return &ms
}

// attrs returns the measurement option of an attribute set, built once
// per distinct set: the sets are few (routes, models, tiers) and the hot
// path should not build them per request.
func (ms *metrics) attrs(key attrKey, build func() []attribute.KeyValue) metric.MeasurementOption {
	if o, ok := ms.sets.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := ms.sets.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(build()...)))
	return o.(metric.MeasurementOption)
}

type attrKey struct {
	kind    uint8
	a, b, c string
	n       int
}

const (
	kindRequest uint8 = iota
	kindOverhead
	kindTokens
	kindTTFT
	kindQuota
)

// done records a finished request.
func (ms *metrics) done(ctx context.Context, route, method string, status int, c *call, total time.Duration) {
	ms.duration.Record(ctx, total.Seconds(), ms.attrs(attrKey{kind: kindRequest, a: route, b: method, n: status}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("http.route", route), attribute.String("http.request.method", method),
			attribute.Int("http.response.status_code", status)}
	}))
	if c.Upstream > 0 {
		ms.overhead.Record(ctx, max(total-c.Upstream, 0).Seconds(), ms.attrs(attrKey{kind: kindOverhead, a: route}, func() []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("http.route", route)}
		}))
	}
	if c.usage != nil && c.model != "" {
		for _, t := range []struct {
			typ string
			n   int
		}{{"input", c.usage.PromptTokens}, {"output", c.usage.CompletionTokens}} {
			ms.tokens.Record(ctx, int64(t.n), ms.attrs(attrKey{kind: kindTokens, a: c.model, b: t.typ}, func() []attribute.KeyValue {
				return []attribute.KeyValue{attribute.String("gen_ai.request.model", c.model),
					attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.token.type", t.typ)}
			}))
		}
	}
	if c.TTFT > 0 && c.model != "" {
		ms.ttft.Record(ctx, c.TTFT.Seconds(), ms.attrs(attrKey{kind: kindTTFT, a: c.model}, func() []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("gen_ai.request.model", c.model)}
		}))
	}
}

// decided records an admission.
func (ms *metrics) decided(ctx context.Context, tier, limit, outcome string) {
	ms.quota.Add(ctx, 1, ms.attrs(attrKey{kind: kindQuota, a: tier, b: limit, c: outcome}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("tier", tier), attribute.String("limit", limit), attribute.String("outcome", outcome)}
	}))
}

// upstreamTimer adds the time spent blocked reading the backend to d.
type upstreamTimer struct {
	r io.Reader
	d *time.Duration
}

func (t upstreamTimer) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := t.r.Read(p)
	*t.d += time.Since(start)
	return n, err
}
