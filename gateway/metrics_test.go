package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

// withMetrics gives the gateway a meter of its own, exposed at /metrics.
func withMetrics(t *testing.T) envOption {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return func(c *envConfig) {
		c.Meter = mp.Meter("test")
		c.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
}

// scrape reads /metrics into series → value.
func (e *env) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(e.gw.URL + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %v %v", resp, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4}, withMetrics(t), withLimits(keyHermes, quota.Limits{RPM: 1}))
	for i := 0; i < 3; i++ {
		e.send(t, "/v1/chat", hi+`}`)
	}
	for i := 0; i < 2; i++ {
		e.send(t, "/v1/chat/stream", hi+`}`)
	}
	for _, key := range []string{keyHermes, keyHermes} { // RPM 1: allowed, then denied
		resp := e.post(t, "/v1/chat", key, hi+`}`)
		io.Copy(io.Discard, resp.Body)
	}
	e.do(t, "GET", "/v1/models", "sk-wrong-key", "")
	// Random paths and model names must not become labels.
	for i := 0; i < 2; i++ {
		e.do(t, "GET", fmt.Sprintf("/v1/zz-path-%d", i), keyAll, "")
		resp := e.post(t, "/v1/chat", keyAll, fmt.Sprintf(`{"model":"zz-model-%d","messages":[{"role":"user","content":"hi"}]}`, i))
		io.Copy(io.Discard, resp.Body)
	}
	poll.Until(t, "the requests' metrics", func() bool {
		return e.scrape(t)[`http_server_active_requests`] == 0
	})
	m := e.scrape(t)
	st := e.sim.Stats()
	want := map[string]float64{
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/v1/chat"}`:        4,
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/v1/chat/stream"}`: 2,
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="429",http_route="/v1/chat"}`:        1,
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="404",http_route="/v1/chat"}`:        2,
		`http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404",http_route="unmatched"}`:        2,
		`http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="401",http_route="/v1/models"}`:       1,
		`gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_request_model="hermes",gen_ai_token_type="input"}`:                 float64(st.ReportedPrompt),
		`gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_request_model="hermes",gen_ai_token_type="output"}`:                float64(st.ReportedTokens),
		`gen_ai_client_token_usage_count{gen_ai_operation_name="chat",gen_ai_request_model="hermes",gen_ai_token_type="output"}`:              6,
		`gen_ai_server_time_to_first_token_seconds_count{gen_ai_request_model="hermes"}`:                                                      2,
		`obol_gateway_overhead_seconds_count{http_route="/v1/chat"}`:                                                                          4,
		`obol_quota_decisions_total{limit="none",outcome="allowed",tier="pro"}`:                                                               5,
		`obol_quota_decisions_total{limit="none",outcome="allowed",tier="free"}`:                                                              1,
		`obol_quota_decisions_total{limit="rpm",outcome="denied",tier="free"}`:                                                                1,
		`obol_auth_failures_total`:    1,
		`obol_streams_active`:         0,
		`http_server_active_requests`: 0,
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	if st.ReportedTokens != 24 {
		t.Errorf("the backend reported %d completion tokens, want 24", st.ReportedTokens)
	}
	for series := range m {
		if strings.Contains(series, "zz-") || strings.Contains(series, "key_") || strings.Contains(series, "sk-") {
			t.Errorf("a request's own text became a label: %s", series)
		}
	}
}

// TestAccessLogFields: one JSON line per request, field by field.
func TestAccessLogFields(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 5})
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	io.Copy(io.Discard, resp.Body)
	id := resp.Header.Get("X-Request-Id")
	var line map[string]any
	poll.Until(t, "the access log line", func() bool {
		sc := bufio.NewScanner(strings.NewReader(e.log.String()))
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil && l["msg"] == "request" && l["request_id"] == id {
				line = l
				return true
			}
		}
		return false
	})
	for field, want := range map[string]any{
		"level": "INFO", "method": "POST", "path": "/v1/chat/stream", "status": float64(200), "key_id": "key_all", "tier": "pro",
		"model": "hermes", "backend": "sim", "prompt_tokens": float64(4), "completion_tokens": float64(5), "usage_counted": false,
		"stream": true, "stream_outcome": "completed",
	} {
		if line[field] != want {
			t.Errorf("%s = %v, want %v", field, line[field], want)
		}
	}
	for _, field := range []string{"duration_ms", "ttft_ms", "upstream_ms"} {
		if v, ok := line[field].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive time", field, line[field])
		}
	}
	if v, ok := line["overhead_ms"].(float64); !ok || v < 0 || v > line["duration_ms"].(float64) {
		t.Errorf("overhead_ms = %v of %v", line["overhead_ms"], line["duration_ms"])
	}
	if strings.Contains(e.log.String(), keyAll) {
		t.Error("the secret is in the log")
	}
}
