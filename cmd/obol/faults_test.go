package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/usage"
)

// replica is one obol process of a fleet, restartable on its data_dir.
type replica struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	base string // "" while it is down
	logs []*syncbuf.Buffer
	env  []string
}

func (r *replica) start(t *testing.T) {
	cmd, base, logs := startObolWith(t, "testdata/ledger.yaml", r.env...)
	r.mu.Lock()
	r.cmd, r.base, r.logs = cmd, base, append(r.logs, logs)
	r.mu.Unlock()
}

func (r *replica) url() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base
}

// TestLedgerUnderFaults is the ledger's day of faults: three replicas on
// one Redis (counters) and one PostgreSQL (records) under a mixed load
// (complete answers, streams, streams the client abandons, clients that
// leave before a non-streaming answer); PostgreSQL is killed in the
// middle; a replica is stopped with SIGTERM while it is down and streams
// are open, and started again after it is back. Afterwards the ledger holds every request the replicas logged,
// once, token for token, and the backend-reported ones match the
// backend's own count.
func TestLedgerUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet under load")
	}
	s := sim.New(sim.Config{ReplyTokens: 200, TokensPerSecond: 300})
	up := httptest.NewServer(s)
	defer up.Close()
	rs := redistest.Start(t)
	pg := pgtest.Start(t)
	replicas := make([]*replica, 3)
	for i := range replicas {
		replicas[i] = &replica{env: []string{"TEST_UPSTREAM=" + up.URL + "/v1", "TEST_DATA_DIR=" + t.TempDir(),
			"TEST_GRACE=2s", "TEST_REDIS_URL=" + rs.URL(), "TEST_POSTGRES_URL=" + pg.URL()}}
		replicas[i].start(t)
	}

	// The load: workers in a loop over five kinds of request, each sent
	// to a replica that is up.
	var sent atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 8 {
				select {
				case <-quit:
					return
				default:
				}
				base := replicas[i%3].url()
				if base == "" {
					base = replicas[(i+1)%3].url()
				}
				if base == "" || !oneRequest(t, base, i%5) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	at := func(n int64) {
		for sent.Load() < n {
			time.Sleep(2 * time.Millisecond)
		}
	}

	at(100)
	pg.Stop()
	at(200)
	r0 := replicas[0]
	r0.mu.Lock()
	r0.base = ""
	cmd := r0.cmd
	r0.mu.Unlock()
	stop0 := time.Now()
	stop(t, cmd, r0.logs[0])
	if strings.Count(r0.logs[0].String(), `"msg":"usage record spooled"`) == 0 {
		t.Log("the stopped replica had nothing left to spool")
	}
	at(300)
	pg.Restart()
	r0.start(t)
	at(400)
	close(quit)
	wg.Wait()
	t.Logf("%d requests; replica 0 stopped in %s", sent.Load(), time.Since(stop0).Round(time.Millisecond))

	// What every replica logged, by request id.
	type line struct {
		Msg        string `json:"msg"`
		RequestID  string `json:"request_id"`
		Prompt     *int64 `json:"prompt_tokens"`
		Completion int64  `json:"completion_tokens"`
		Counted    bool   `json:"usage_counted"`
		Outcome    string `json:"stream_outcome"`
		Stream     bool   `json:"stream"`
	}
	type tally struct{ prompt, completion, requests int64 }
	// read sums what the replicas logged; a handler logs a moment after
	// its client has the answer, so it is read until the ledger agrees.
	read := func() (logged, reported tally) {
		ids := map[string]bool{}
		for _, r := range replicas {
			for _, b := range r.logs {
				sc := bufio.NewScanner(strings.NewReader(b.String()))
				for sc.Scan() {
					var l line
					if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "request" || l.Prompt == nil {
						continue
					}
					if ids[l.RequestID] {
						t.Errorf("request id %s logged twice", l.RequestID)
					}
					ids[l.RequestID] = true
					logged.prompt += *l.Prompt
					logged.completion += l.Completion
					logged.requests++
					if !(l.Stream && l.Outcome == "client_gone") { // a cut stream gets no final usage
						reported.prompt += *l.Prompt
						reported.completion += l.Completion
					}
				}
			}
		}
		return logged, reported
	}
	var logged, reported tally
	var got usage.Row
	deadline := time.Now().Add(10 * time.Second)
	for {
		logged, reported = read()
		s, status := usageNow(t, replicas[1].url())
		got = hermes(s)
		if status == 200 && got.Requests == logged.requests || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.Requests != logged.requests {
		t.Errorf("ledger %d requests, access logs %d", got.Requests, logged.requests)
	}
	t.Logf("ledger %+v; %d records spooled by the stopped replica; backend: %+v", got,
		strings.Count(r0.logs[0].String(), `"msg":"usage record spooled"`), s.Stats())
	if got.Prompt != logged.prompt || got.Completion != logged.completion {
		t.Errorf("ledger %+v, the replicas' access logs %+v", got, logged)
	}
	st := s.Stats()
	if reported.prompt != st.ReportedPrompt || reported.completion != st.ReportedTokens {
		t.Errorf("backend-reported requests: logged %+v, the backend reported %d + %d", reported, st.ReportedPrompt, st.ReportedTokens)
	}
	// The backend reports usage in every chunk (continuous_usage_stats),
	// so even the streams cut short are charged its count: every prompt
	// token exactly, and every generated token but those still in flight
	// when the stream was cut.
	if got.Prompt != st.PromptTokens || got.Requests != st.Requests {
		t.Errorf("ledger %+v; the backend saw %d requests with %d prompt tokens", got, st.Requests, st.PromptTokens)
	}
	if gap := st.CompletionTokens - got.Completion; gap < 0 || gap > st.Cancelled {
		t.Errorf("ledger %d completion tokens, the backend generated %d (%d streams cut)", got.Completion, st.CompletionTokens, st.Cancelled)
	}
	for _, r := range replicas[1:] {
		if !strings.Contains(r.logs[0].String(), `"msg":"usage record delayed"`) {
			t.Error("a replica logged no delayed record while PostgreSQL was down")
		}
	}
	if !strings.Contains(r0.logs[1].String(), "usage records replayed from the spool") && strings.Contains(r0.logs[0].String(), "usage record spooled") {
		t.Error("the spooled records were not replayed at the next start")
	}
}

// oneRequest sends a request of the given kind and reports whether a
// replica took it (a replica shutting down may refuse the connection).
func oneRequest(t *testing.T, base string, kind int) bool {
	const short = `{"model":"hermes","messages":[{"role":"user","content":"a b c"}],"max_tokens":8%s}`
	var req *http.Request
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch kind {
	case 0: // a complete answer
		req = authed("POST", base+"/v1/chat", fmt.Sprintf(short, ""))
	case 1: // a native stream
		req = authed("POST", base+"/v1/chat/stream", fmt.Sprintf(short, ""))
	case 2: // an OpenAI stream with usage
		req = authed("POST", base+"/v1/chat/completions", fmt.Sprintf(short, `,"stream":true,"stream_options":{"include_usage":true}`))
	case 3: // a long stream abandoned after three tokens
		req = authed("POST", base+"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"go on"}]}`)
	case 4: // a client that leaves before the answer
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, 5*time.Millisecond)
		defer c2()
		req = authed("POST", base+"/v1/chat/completions", fmt.Sprintf(short, ""))
	}
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		// Left on purpose (kind 4), or a replica going down.
		return kind == 4 && errors.Is(err, context.DeadlineExceeded)
	}
	defer resp.Body.Close()
	if kind == 3 {
		br := bufio.NewReader(resp.Body)
		for n := 0; n < 4; {
			l, err := br.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(l, "data: ") {
				n++
			}
		}
		return true
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("kind %d: status %d", kind, resp.StatusCode)
	}
	return true
}
