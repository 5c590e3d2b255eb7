package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/loadtest/sim"
)

// TestLoadMeasures: a closed and an open loop against the simulator,
// streaming and not, count every request and measure tokens.
func TestLoadMeasures(t *testing.T) {
	s := sim.New(sim.Config{ReplyTokens: 5})
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, tt := range []struct {
		name string
		c    loadConfig
	}{
		{"closed", loadConfig{Conns: 4, Requests: 200}},
		{"open", loadConfig{Conns: 4, Rate: 2000, Requests: 200}},
		{"stream", loadConfig{Conns: 4, Requests: 100, Stream: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Target, c.Path, c.Duration, c.MaxTokens = srv.URL, "/v1/chat/completions", time.Minute, 5
			before := s.Stats().Requests
			rep, err := runLoad(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests != c.Requests || rep.ByStatus["200"] != c.Requests || len(rep.Latencies) != c.Requests {
				t.Errorf("report %+v", rep.ByStatus)
			}
			if got := s.Stats().Requests - before; got != int64(c.Requests) {
				t.Errorf("the simulator saw %d", got)
			}
			if c.Stream && (len(rep.TTFT) != c.Requests || len(rep.Gaps) != 4*c.Requests) {
				t.Errorf("%d first tokens and %d gaps, want %d and %d", len(rep.TTFT), len(rep.Gaps), c.Requests, 4*c.Requests)
			}
			var b strings.Builder
			rep.print(&b, "sim")
			if !strings.Contains(b.String(), "p99.9") {
				t.Errorf("report:\n%s", b.String())
			}
		})
	}
}

func TestLoadRefusesRemoteTargets(t *testing.T) {
	for _, target := range []string{"http://example.com", "http://10.0.0.1:8080", "http://[2001:db8::1]:80"} {
		c := loadConfig{Target: target, Conns: 1, Duration: time.Second}
		if _, err := runLoad(context.Background(), c); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: %v", target, err)
		}
	}
}

// TestHoldStreams: every stream is open (has a token, none has ended)
// when the measurement is taken, and each then runs to [DONE].
func TestHoldStreams(t *testing.T) {
	s := sim.New(sim.Config{ReplyTokens: 5, TokensPerSecond: 50})
	srv := httptest.NewServer(s)
	defer srv.Close()
	const n = 30
	var opened int
	done, err := holdStreams(context.Background(), srv.Client(), srv.URL, "sk-any", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`), n, func() {
		opened++
		if st := s.Stats(); st.Requests != n {
			t.Errorf("measured with %d of %d streams started", st.Requests, n)
		}
	})
	if err != nil || done != n || opened != 1 {
		t.Errorf("holdStreams = %d, %v; open called %d times", done, err, opened)
	}
}
