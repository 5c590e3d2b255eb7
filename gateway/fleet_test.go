package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
)

// TestFleetUnderFaults: three backends of one priority under a mixed
// load; one is killed, one slowed, one answers errors for a while, then
// recovers. Every answer is intact but the streams the kill cut after
// their first byte, and the ledger holds exactly what the access log
// says each request used, the backends' own counts where they reported.
func TestFleetUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a load")
	}
	sims := make([]*sim.Server, 3)
	srvs := make([]*httptest.Server, 3)
	for i := range sims {
		sims[i] = sim.New(sim.Config{ReplyTokens: 6, TokensPerSecond: 300})
		srvs[i] = httptest.NewServer(sims[i])
		t.Cleanup(srvs[i].Close)
	}
	e := newEnv(t, sim.Config{}, withBreaker(models.BreakerOptions{Failures: 3, Cooldown: 200 * time.Millisecond}), func(c *envConfig) {
		c.models[0].Backends = nil
		for i, name := range []string{"a", "b", "c"} {
			c.models[0].Backends = append(c.models[0].Backends, models.Backend{Name: name, URL: srvs[i].URL + "/v1", Model: "m"})
		}
	})

	var sent, intact, cut, failed atomic.Int64
	var failures sync.Map
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 6 {
				select {
				case <-quit:
					return
				default:
				}
				ok, wasCut, why := fleetRequest(e.gw.URL, i%3)
				switch {
				case ok:
					intact.Add(1)
				case wasCut:
					cut.Add(1)
				default:
					failed.Add(1)
					failures.Store(why, true)
				}
				sent.Add(1)
			}
		}()
	}
	at := func(n int64) {
		for sent.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}
	at(60)
	srvs[0].CloseClientConnections() // a is killed
	srvs[0].Close()
	at(120)
	sims[1].SetConfig(sim.Config{ReplyTokens: 6, TokensPerSecond: 100, FirstTokenDelay: 30 * time.Millisecond}) // b slows
	at(160)
	sims[2].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}}) // c fails
	at(240)
	sims[2].SetConfig(sim.Config{ReplyTokens: 6, TokensPerSecond: 300}) // c is back
	at(320)
	close(quit)
	wg.Wait()
	t.Logf("%d requests: %d intact, %d streams cut by the kill, %d failed", sent.Load(), intact.Load(), cut.Load(), failed.Load())
	failures.Range(func(k, _ any) bool { t.Errorf("a request failed: %v", k); return true })
	if failed.Load() > 0 {
		for _, l := range strings.Split(e.log.String(), "\n") {
			if strings.Contains(l, "ERROR") || strings.Contains(l, "panic") || strings.Contains(l, "\"status\":500") {
				t.Log(l)
			}
		}
	}
	if cut.Load() > 6 {
		t.Errorf("%d streams cut; no more than the six in flight at the kill can be", cut.Load())
	}

	// The ledger against the access log, line by line, and each backend's
	// reports against what was logged as reported by it.
	var lines map[string]accessLine
	var logged tally
	var reported map[string]*tally
	poll.Until(t, "the ledger to hold every logged request", func() bool {
		lines = accessLog(t, e)
		logged, reported = tally{}, map[string]*tally{"a": {}, "b": {}, "c": {}}
		for _, l := range lines {
			if l.PromptTokens == nil {
				continue
			}
			logged.prompt += *l.PromptTokens
			logged.completion += l.CompletionTokens
			logged.requests++
			if r := reported[l.Backend]; !l.Counted && r != nil {
				r.prompt += *l.PromptTokens
				r.completion += l.CompletionTokens
			}
		}
		return ledgerTally(e.usageOf(t, keyAll, "")) == logged
	})
	for i, name := range []string{"a", "b", "c"} {
		st, r := sims[i].Stats(), reported[name]
		exact := r.prompt == st.ReportedPrompt && r.completion == st.ReportedTokens
		// The killed backend may have written usage the kill kept from the
		// gateway: a stream it cut (the gateway charged its own count), or
		// an answer not yet read (the gateway failed over). The gateway
		// never logs a report it did not get.
		lost := name == "a" && r.prompt <= st.ReportedPrompt && r.completion <= st.ReportedTokens
		if !exact && !lost {
			t.Errorf("backend %s: logged as reported %+v, it reported %d + %d", name, *r, st.ReportedPrompt, st.ReportedTokens)
		}
	}
	if logged.requests != intact.Load()+cut.Load() {
		t.Errorf("%d requests recorded, %d answered", logged.requests, intact.Load()+cut.Load())
	}
}

// fleetRequest sends one request of a kind and reports whether its
// answer was intact, or a stream cut after its first byte.
func fleetRequest(base string, kind int) (ok, wasCut bool, why string) {
	path, body := "/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"a b"}]}`
	switch kind {
	case 1:
		path = "/v1/chat/stream"
	case 2:
		path, body = "/v1/chat/completions", `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b"}]}`
	}
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+keyAll)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, false, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return false, false, fmt.Sprintf("%s: %d %s", path, resp.StatusCode, b)
	}
	if kind == 0 {
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "Hello from the simulator"), false, "incomplete answer: " + string(b)
	}
	sc := bufio.NewScanner(resp.Body)
	var text strings.Builder
	sawError, done := false, false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "data: [DONE]":
			done = true
		case strings.HasPrefix(line, `data: {"error"`):
			sawError = true
		case strings.HasPrefix(line, "data: "):
			text.WriteString(line)
		}
	}
	if sawError && done {
		return false, true, ""
	}
	return done && strings.Contains(text.String(), "simulator"), false, "stream: " + text.String()
}
