package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/wire/openai"
)

func accessLines() []accessLine {
	full := &call{Turn: openai.Turn{ID: "chat_01JDXYZ", TTFT: 1234567 * time.Nanosecond, Upstream: 40 * time.Millisecond},
		key: &keys.Identity{ID: "key_a", Tier: "pro"}, model: "hermes", backend: "vllm-1",
		usage: &openai.Usage{PromptTokens: 12, CompletionTokens: 345}, counted: true, stream: true, outcome: "client_gone"}
	weird := httptest.NewRequest("GET", "/v1/x", nil)
	weird.URL.Path = "/v1/\"quoted\"\\\n\t\x01<&>\u2028\xff" + "é"
	return []accessLine{
		{r: httptest.NewRequest("POST", "/v1/chat/stream", nil), c: full, status: 200, took: 52 * time.Millisecond},
		{r: weird, c: &call{Turn: openai.Turn{ID: "req_1"}}, status: 404, code: apierr.CodeNotFound, took: 3 * time.Microsecond},
		{r: httptest.NewRequest("GET", "/healthz", nil), c: &call{Turn: openai.Turn{ID: "req_2", Upstream: time.Second}}, status: 503, took: time.Millisecond},
	}
}

// TestAccessLineAsSlogWritesIt: the hand encoder's line parses to what
// slog's JSON handler writes for the same fields, time included.
func TestAccessLineAsSlogWritesIt(t *testing.T) {
	now := time.Date(2026, 11, 30, 5, 6, 7, 890123456, time.UTC)
	for _, l := range accessLines() {
		var want bytes.Buffer
		h := slog.NewJSONHandler(&want, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				a.Value = slog.TimeValue(now)
			}
			return a
		}})
		slog.New(h).LogAttrs(context.Background(), slog.LevelInfo, "request", l.attrs()...)
		got := l.appendJSON(nil, now)
		var a, b map[string]any
		if err := json.Unmarshal(got, &b); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		json.Unmarshal(want.Bytes(), &a)
		if !reflect.DeepEqual(a, b) || !bytes.HasSuffix(got, []byte("}\n")) {
			t.Errorf("hand-encoded:\n%s\nslog:\n%s", got, want.String())
		}
		if !regexp.MustCompile(`^\{"time":"2026-11-30T05:06:07\.890123456Z","level":"INFO","msg":"request",`).Match(got) {
			t.Errorf("the line starts %s", got[:60])
		}
	}
}

// BenchmarkAccessLog is one request's access-log line, through slog's
// JSON handler and by hand into a pooled buffer.
func BenchmarkAccessLog(b *testing.B) {
	l := accessLines()[0]
	b.Run("slog", func(b *testing.B) {
		log := slog.New(slog.NewJSONHandler(io.Discard, nil))
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "request", l.attrs()...)
		}
	})
	b.Run("hand", func(b *testing.B) {
		s := &Server{log: slog.New(slog.NewJSONHandler(io.Discard, nil)), accessLog: io.Discard}
		b.ReportAllocs()
		for b.Loop() {
			s.logAccess(l.r, l.c, l.status, l.code)
		}
	})
}
