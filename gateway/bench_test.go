package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// BenchmarkRelay measures a whole request through the gateway and the
// simulator over loopback: the gateway's cost plus the simulator's, with
// quotas and ledger in process and bbolt (embedded) or in the shared test
// Redis; "noledger" is the embedded quotas with records dropped, to tell
// the ledger's share.
func BenchmarkRelay(b *testing.B) {
	for _, store := range []string{"noledger", "embedded", "redis"} {
		b.Run(store, func(b *testing.B) { benchmarkRelay(b, store) })
	}
}

func benchmarkRelay(b *testing.B, store string) {
	for _, bc := range []struct{ name, path, body string }{
		{"chat", "/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hello there"}],"max_tokens":20}`},
		{"stream", "/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"hello there"}],"max_tokens":20}`},
		{"completions-stream", "/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hello there"}],"max_tokens":20}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Limits high enough never to refuse, so that every request
			// is admitted and settled.
			opts := []envOption{withLimits(keyAll, quota.Limits{RPM: 1 << 40, TPM: 1 << 50, TPD: 1 << 50})}
			switch store {
			case "redis":
				opts = append(opts, withQuota(redisLimiter(b)), withLedger(postgresLedger(b)))
			case "noledger":
				opts = append(opts, func(c *envConfig) { c.Ledger = dropLedger{} })
			}
			e := newEnv(b, sim.Config{ReplyTokens: 20}, opts...)
			e.sim.Record(false)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", e.gw.URL+bc.path, strings.NewReader(bc.body))
					req.Header.Set("Authorization", "Bearer "+keyAll)
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		})
	}
}

// BenchmarkFloor is the same request through a bare httputil.ReverseProxy
// (no auth, decoding or relay logic): the floor BenchmarkRelay compares to.
func BenchmarkFloor(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"chat", `{"model":"hermes","messages":[{"role":"user","content":"hello there"}],"max_tokens":20}`},
		{"stream", `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}],"max_tokens":20}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 20}))
			defer up.Close()
			target, _ := url.Parse(up.URL)
			rp := httputil.NewSingleHostReverseProxy(target)
			rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
			proxy := httptest.NewServer(rp)
			defer proxy.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(proxy.URL+"/v1/chat/completions", "application/json", strings.NewReader(bc.body))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// dropLedger drops every record: for measuring the relay without the
// ledger, never for claims about the ledger.
type dropLedger struct{}

func (dropLedger) Record(usage.Record) <-chan struct{} { return nil }
func (dropLedger) Summary(context.Context, string, string) (*usage.Summary, error) {
	return nil, errors.New("no ledger")
}
