package gateway

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonenc"
)

// accessLine is one request's access-log line: the fields, in order, as
// both encoders write them.
type accessLine struct {
	r      *http.Request
	c      *call
	status int
	code   apierr.Code
	took   time.Duration
}

// logAccess writes the request's line: encoded by hand into a pooled
// buffer and written whole to Options.AccessLog (JSON logs), or through
// the logger (text logs, tests). Nothing below info.
func (s *Server) logAccess(r *http.Request, c *call, status int, code apierr.Code) {
	if !s.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	l := accessLine{r: r, c: c, status: status, code: code, took: time.Since(c.Start)}
	if s.accessLog == nil {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", l.attrs()...)
		return
	}
	bp := linePool.Get().(*[]byte)
	b := l.appendJSON((*bp)[:0], time.Now())
	s.accessLog.Write(b)
	*bp = b
	linePool.Put(bp)
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// attrs are the line's fields for slog.
func (l *accessLine) attrs() []slog.Attr {
	c := l.c
	attrs := []slog.Attr{
		slog.String("request_id", c.ID),
		slog.String("method", l.r.Method),
		slog.String("path", l.r.URL.Path),
		slog.Int("status", l.status),
		slog.Float64("duration_ms", ms(l.took)),
	}
	if c.key != nil {
		attrs = append(attrs, slog.String("key_id", c.key.ID), slog.String("tier", c.key.Tier))
	}
	if c.adminToken != "" {
		attrs = append(attrs, slog.String("admin_token", c.adminToken))
	}
	if c.model != "" {
		attrs = append(attrs, slog.String("model", c.model))
	}
	if c.backend != "" {
		attrs = append(attrs, slog.String("backend", c.backend))
	}
	if l.code != "" {
		attrs = append(attrs, slog.String("error_code", string(l.code)))
	}
	if c.usage != nil {
		attrs = append(attrs, slog.Int("prompt_tokens", c.usage.PromptTokens),
			slog.Int("completion_tokens", c.usage.CompletionTokens), slog.Bool("usage_counted", c.counted))
	}
	if c.stream {
		attrs = append(attrs, slog.Bool("stream", true))
	}
	if c.outcome != "" {
		attrs = append(attrs, slog.String("stream_outcome", c.outcome))
	}
	if c.TTFT > 0 {
		attrs = append(attrs, slog.Float64("ttft_ms", ms(c.TTFT)))
	}
	if c.Upstream > 0 {
		attrs = append(attrs, slog.Float64("upstream_ms", ms(c.Upstream)), slog.Float64("overhead_ms", ms(max(l.took-c.Upstream, 0))))
	}
	return attrs
}

// appendJSON appends the line as slog's JSON handler writes it (time as
// RFC 3339 with nanoseconds, level, msg, then the fields of attrs),
// without reflection or an allocation.
func (l *accessLine) appendJSON(b []byte, now time.Time) []byte {
	c := l.c
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request"`...)
	b = appendStr(b, "request_id", c.ID)
	b = appendStr(b, "method", l.r.Method)
	b = appendStr(b, "path", l.r.URL.Path)
	b = strconv.AppendInt(append(b, `,"status":`...), int64(l.status), 10)
	b = appendMs(b, "duration_ms", l.took)
	if c.key != nil {
		b = appendStr(appendStr(b, "key_id", c.key.ID), "tier", c.key.Tier)
	}
	if c.adminToken != "" {
		b = appendStr(b, "admin_token", c.adminToken)
	}
	if c.model != "" {
		b = appendStr(b, "model", c.model)
	}
	if c.backend != "" {
		b = appendStr(b, "backend", c.backend)
	}
	if l.code != "" {
		b = appendStr(b, "error_code", string(l.code))
	}
	if c.usage != nil {
		b = strconv.AppendInt(append(b, `,"prompt_tokens":`...), int64(c.usage.PromptTokens), 10)
		b = strconv.AppendInt(append(b, `,"completion_tokens":`...), int64(c.usage.CompletionTokens), 10)
		b = strconv.AppendBool(append(b, `,"usage_counted":`...), c.counted)
	}
	if c.stream {
		b = append(b, `,"stream":true`...)
	}
	if c.outcome != "" {
		b = appendStr(b, "stream_outcome", c.outcome)
	}
	if c.TTFT > 0 {
		b = appendMs(b, "ttft_ms", c.TTFT)
	}
	if c.Upstream > 0 {
		b = appendMs(appendMs(b, "upstream_ms", c.Upstream), "overhead_ms", max(l.took-c.Upstream, 0))
	}
	return append(b, "}\n"...)
}

func appendMs(b []byte, name string, d time.Duration) []byte {
	b = append(append(append(b, `,"`...), name...), `":`...)
	return strconv.AppendFloat(b, ms(d), 'f', -1, 64)
}

// appendStr appends ,"name":"value", value escaped as slog escapes it
// (without HTML escaping).
func appendStr(b []byte, name, v string) []byte {
	b = append(append(append(b, `,"`...), name...), `":`...)
	return jsonenc.AppendQuoted(b, v, false)
}
