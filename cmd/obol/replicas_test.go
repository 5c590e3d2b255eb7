package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
)

// TestReplicasShareLimits: three gateway processes on one Redis together
// admit exactly a key's RPM, as one would. RPM 6 refills one request every
// 10 s, far longer than the burst takes, so the count is exact.
func TestReplicasShareLimits(t *testing.T) {
	_, prefix := redistest.Shared(t)
	s := sim.New(sim.Config{ReplyTokens: 2})
	up := httptest.NewServer(s)
	defer up.Close()
	var bases []string
	for i := 0; i < 3; i++ {
		_, base, _ := startObolWith(t, "testdata/replicas.yaml", "TEST_UPSTREAM="+up.URL+"/v1",
			"TEST_DATA_DIR="+t.TempDir(), "TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix)
		bases = append(bases, base)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", bases[i%3]+"/v1/chat", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer sk-demo-free-4f1c9a")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 6 || codes[429] != 54 {
		t.Errorf("answers %v, want exactly 6 × 200 and 54 × 429", codes)
	}
	if got := s.Stats().Requests; got != 6 {
		t.Errorf("the backend saw %d requests, want 6", got)
	}
}
