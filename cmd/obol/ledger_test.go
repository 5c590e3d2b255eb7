package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/usage"
)

const testSecret = "sk-demo-free-4f1c9a" // key_test in the fixtures

func authed(method, url, body string) *http.Request {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testSecret)
	return req
}

// usageNow reads GET /v1/usage for key_test.
func usageNow(t *testing.T, base string) (usage.Summary, int) {
	t.Helper()
	resp, err := http.DefaultClient.Do(authed("GET", base+"/v1/usage", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s usage.Summary
	json.NewDecoder(resp.Body).Decode(&s)
	return s, resp.StatusCode
}

func hermes(s usage.Summary) usage.Row { return s.ByModel["hermes"] }

// waitUsage polls GET /v1/usage until it counts n requests.
func waitUsage(t *testing.T, base string, n int64) usage.Summary {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, status := usageNow(t, base)
		if status == 200 && hermes(s).Requests >= n {
			if hermes(s).Requests != n {
				t.Fatalf("ledger counts %d requests, want %d", hermes(s).Requests, n)
			}
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger: %+v (status %d), want %d requests", s, status, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit, and for its log.
func stop(t *testing.T, cmd *exec.Cmd, logs *syncbuf.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, logs)
}

// waitExit waits for a clean exit of a gateway that was told to stop.
func waitExit(t *testing.T, cmd *exec.Cmd, logs *syncbuf.Buffer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway did not exit\n%s", logs)
	}
}

// TestShutdownRecordsStreamsCut: streams still running when the grace
// is over are ended with an error event, and each is recorded with the
// tokens its client received.
func TestShutdownRecordsStreamsCut(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 400, TokensPerSecond: 50}))
	defer up.Close()
	dataDir := t.TempDir()
	env := []string{"TEST_UPSTREAM=" + up.URL + "/v1", "TEST_DATA_DIR=" + dataDir, "TEST_GRACE=300ms"}
	cmd, base, logs := startObolWith(t, "testdata/ledger.yaml", env...)

	const streams = 3
	received := make([]int64, streams)
	var wg sync.WaitGroup
	started := make(chan struct{}, streams)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.DefaultClient.Do(authed("POST", base+"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
			if err != nil {
				t.Error(err)
				started <- struct{}{}
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			first, sawError, done := true, false, false
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				if first {
					started <- struct{}{}
					first = false
				}
				var ev struct {
					Delta string
					Error *struct{ Code, Message string }
				}
				switch json.Unmarshal([]byte(data), &ev); {
				case data == "[DONE]":
					done = true
				case ev.Error != nil:
					sawError = ev.Error.Code == "overloaded" && strings.Contains(ev.Error.Message, "shutting down")
				case ev.Delta != "":
					received[i]++
				}
			}
			if !sawError || !done {
				t.Errorf("stream %d: shutdown error event %v, [DONE] %v", i, sawError, done)
			}
		}()
	}
	for i := 0; i < streams; i++ {
		<-started
	}
	stop(t, cmd, logs)
	wg.Wait()
	if n := strings.Count(logs.String(), `"stream_outcome":"shutdown"`); n != streams {
		t.Errorf("%d access log lines with stream_outcome shutdown, want %d", n, streams)
	}

	_, base, _ = startObolWith(t, "testdata/ledger.yaml", env...)
	s := waitUsage(t, base, streams)
	var want int64
	for _, n := range received {
		want += n
	}
	if got := hermes(s).Completion; got != want || want == 0 {
		t.Errorf("ledger: %d completion tokens; the clients received %d", got, want)
	}
}

// TestSpoolReplayedAtNextStart: PostgreSQL is down from the first
// request to the shutdown. The records are delayed, then spooled under
// data_dir at exit, and the next start writes them once it is back.
func TestSpoolReplayedAtNextStart(t *testing.T) {
	_, prefix := redistest.Shared(t)
	s := sim.New(sim.Config{ReplyTokens: 5})
	up := httptest.NewServer(s)
	defer up.Close()
	pg := pgtest.Start(t)
	dataDir := t.TempDir()
	env := []string{"TEST_UPSTREAM=" + up.URL + "/v1", "TEST_DATA_DIR=" + dataDir, "TEST_GRACE=300ms",
		"TEST_REDIS_URL=" + redistest.URL(), "TEST_REDIS_PREFIX=" + prefix, "TEST_POSTGRES_URL=" + pg.URL()}
	cmd, base, logs := startObolWith(t, "testdata/ledger.yaml", env...)

	pg.Stop()
	for i := 0; i < 5; i++ {
		resp, err := http.DefaultClient.Do(authed("POST", base+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"one two"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d with PostgreSQL down", resp.StatusCode)
		}
	}
	stop(t, cmd, logs)
	for _, msg := range []string{`"msg":"usage record delayed"`, `"msg":"usage record spooled"`} {
		if n := strings.Count(logs.String(), msg); n != 5 {
			t.Errorf("%d log lines %s, want 5", n, msg)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "spool", "usage-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("spool files: %v", files)
	}

	pg.Restart()
	_, base, logs = startObolWith(t, "testdata/ledger.yaml", env...)
	got := waitUsage(t, base, 5)
	st := s.Stats()
	if hermes(got).Prompt != st.ReportedPrompt || hermes(got).Completion != st.ReportedTokens || st.ReportedTokens != 25 {
		t.Errorf("ledger %+v, backend reported %d + %d", got, st.ReportedPrompt, st.ReportedTokens)
	}
	waitLog(t, logs, "usage records replayed from the spool")
	if files, _ := filepath.Glob(filepath.Join(dataDir, "spool", "*")); len(files) != 0 {
		t.Errorf("spool files left: %v", files)
	}
}

// TestKill9KeepsStoredUsage: what the embedded ledger has stored
// survives a kill -9.
func TestKill9KeepsStoredUsage(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 4}))
	defer up.Close()
	env := []string{"TEST_UPSTREAM=" + up.URL + "/v1", "TEST_DATA_DIR=" + t.TempDir()}
	cmd, base, _ := startObolWith(t, "testdata/ledger.yaml", env...)
	for i := 0; i < 6; i++ {
		resp, err := http.DefaultClient.Do(authed("POST", base+"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	before := waitUsage(t, base, 6)
	cmd.Process.Kill()
	cmd.Wait()
	_, base, _ = startObolWith(t, "testdata/ledger.yaml", env...)
	if after, _ := usageNow(t, base); hermes(after) != hermes(before) || hermes(after).Completion != 24 {
		t.Errorf("after kill -9: %+v, before: %+v", after, before)
	}
}
