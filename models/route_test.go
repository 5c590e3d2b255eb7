package models_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
)

const (
	body       = `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`
	streamBody = `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`
)

// fleet is simulators over real sockets, each a backend of one model.
type fleet struct {
	sims  []*sim.Server
	model *models.Model
	c     *models.Client
}

func newFleet(t *testing.T, bo models.BreakerOptions, backends ...models.Backend) *fleet {
	t.Helper()
	f := &fleet{c: models.NewClient(bo)}
	for i := range backends {
		if backends[i].URL == "" {
			s := sim.New(sim.Config{ReplyTokens: 3})
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			f.sims = append(f.sims, s)
			backends[i].URL = srv.URL + "/v1"
		} else {
			f.sims = append(f.sims, nil)
		}
		backends[i].Model = "m"
	}
	cat, err := models.NewCatalog([]models.Model{{Name: "hermes", ContextWindow: 4096, Backends: backends,
		Timeouts: models.Timeouts{FirstToken: 200 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	f.model = cat.Get("hermes")
	return f
}

// send makes one call and reads its answer whole.
func (f *fleet) send(stream bool) (string, error) {
	req := body
	if stream {
		req = streamBody
	}
	resp, err := f.c.Send(context.Background(), f.model, models.ChatAPI, models.Bytes([]byte(req)), stream)
	if err != nil {
		return "", err
	}
	defer resp.Close()
	if !stream {
		b, err := io.ReadAll(resp.Body)
		return resp.Backend.Name + ":" + string(b), err
	}
	var b strings.Builder
	for {
		data, err := resp.Events.Next()
		if err == io.EOF {
			return resp.Backend.Name + ":" + b.String(), nil
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "data: %s\n\n", data)
	}
}

func (f *fleet) requests(i int) int64 { return f.sims[i].Stats().Requests }

// TestFailoverEachFault: each fault of the first backend, before its
// first byte, sends the request to the second, which answers.
func TestFailoverEachFault(t *testing.T) {
	tests := []struct {
		name  string
		fault sim.Config
		down  bool // the first backend's address refuses connections
	}{
		{name: "connection refused", down: true},
		{name: "500", fault: sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}}},
		{name: "502", fault: sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 502}}},
		{name: "429", fault: sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 429}}},
		{name: "no first token in time", fault: sim.Config{FirstTokenDelay: time.Minute}},
		{name: "error as the first event", fault: sim.Config{Fault: sim.Fault{Kind: sim.StreamError, After: 0}}},
	}
	for _, tt := range tests {
		for _, stream := range []bool{true, false} {
			name := tt.name + map[bool]string{true: "/stream", false: "/complete"}[stream]
			t.Run(name, func(t *testing.T) {
				if !stream && tt.name == "no first token in time" {
					t.Skip("a non-streaming answer has only the total timeout")
				}
				if !stream && tt.name == "error as the first event" {
					tt.fault = sim.Config{Fault: sim.Fault{Kind: sim.StreamError}} // a 500 for a complete answer
				}
				a := models.Backend{Name: "a", Priority: 0}
				if tt.down {
					ln := httptest.NewServer(http.NotFoundHandler())
					a.URL = ln.URL + "/v1"
					ln.Close()
				}
				f := newFleet(t, models.BreakerOptions{}, a, models.Backend{Name: "b", Priority: 1})
				if !tt.down {
					f.sims[0].SetConfig(tt.fault)
				}
				got, err := f.send(stream)
				if err != nil || !strings.HasPrefix(got, "b:") || !strings.Contains(got, "Hello") {
					t.Fatalf("answer %q, %v", got, err)
				}
				if !tt.down && f.requests(0) != 1 {
					t.Errorf("backend a saw %d requests", f.requests(0))
				}
				if f.requests(1) != 1 {
					t.Errorf("backend b saw %d requests", f.requests(1))
				}
			})
		}
	}
}

// TestNoFailoverOfClientErrors: a 400 is the request's fault; another
// backend would refuse it too.
func TestNoFailoverOfClientErrors(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{}, models.Backend{Name: "a"}, models.Backend{Name: "b", Priority: 1})
	f.sims[0].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 400}})
	_, err := f.send(false)
	var ue *models.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 400 || f.requests(1) != 0 {
		t.Errorf("err %v; backend b saw %d", err, f.requests(1))
	}
}

// TestWeights: among backends of one priority, requests follow the weights.
func TestWeights(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{}, models.Backend{Name: "a", Weight: 1}, models.Backend{Name: "b", Weight: 3}, models.Backend{Name: "c", Weight: 6})
	const n = 2000
	for i := 0; i < n; i++ {
		if _, err := f.send(false); err != nil {
			t.Fatal(err)
		}
	}
	for i, share := range []float64{0.1, 0.3, 0.6} {
		// Five standard deviations of a binomial count.
		got, want := float64(f.requests(i)), share*n
		if sd := 5 * sqrt(n*share*(1-share)); got < want-sd || got > want+sd {
			t.Errorf("backend %d: %v of %d requests, want %v ± %.0f", i, got, n, want, sd)
		}
	}
}

func sqrt(x float64) float64 {
	z := x
	for i := 0; i < 50; i++ {
		z -= (z*z - x) / (2 * z)
	}
	return z
}

func status(f *fleet, name string) models.BackendStatus {
	for _, s := range f.c.Status([]*models.Model{f.model}) {
		if s.Name == name {
			return s
		}
	}
	return models.BackendStatus{}
}

// TestBreaker: consecutive failures open a backend's breaker; while open
// it gets no requests; after the cooldown one probe goes through; a
// failed probe opens it again, a good one closes it.
func TestBreaker(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{Failures: 3, Cooldown: 50 * time.Millisecond},
		models.Backend{Name: "a"}, models.Backend{Name: "b", Priority: 1})
	f.sims[0].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
	for i := 0; i < 3; i++ {
		if got, err := f.send(false); err != nil || !strings.HasPrefix(got, "b:") {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if s := status(f, "a"); s.State != models.StateOpen || s.ConsecutiveFailures != 3 || s.RetryAt == nil {
		t.Fatalf("after 3 failures: %+v", s)
	}
	for i := 0; i < 5; i++ {
		f.send(false)
	}
	if n := f.requests(0); n != 3 {
		t.Errorf("an open backend got requests: %d, want 3", n)
	}
	// Past the cooldown, a probe; it fails, and the breaker opens again.
	poll.Until(t, "the cooldown", func() bool { return status(f, "a").RetryAt == nil })
	f.send(false)
	if n, s := f.requests(0), status(f, "a"); n != 4 || s.State != models.StateOpen {
		t.Errorf("after a failed probe: %d requests, %+v", n, s)
	}
	// The backend recovers: the next probe closes the breaker.
	f.sims[0].SetConfig(sim.Config{ReplyTokens: 3})
	poll.Until(t, "the longer cooldown", func() bool { return status(f, "a").RetryAt == nil })
	if got, err := f.send(false); err != nil || !strings.HasPrefix(got, "a:") {
		t.Errorf("the probe: %q, %v", got, err)
	}
	if s := status(f, "a"); s.State != models.StateClosed || s.ConsecutiveFailures != 0 {
		t.Errorf("after a good probe: %+v", s)
	}
	// An operator can close it at once.
	f.sims[0].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
	for i := 0; i < 3; i++ {
		f.send(false)
	}
	if n := f.c.Reset([]*models.Model{f.model}, "hermes/a"); n != 1 || status(f, "a").State != models.StateClosed {
		t.Errorf("reset: %d, %+v", n, status(f, "a"))
	}
}

// TestRetryAfterHonoured: a backend that answers 429 with Retry-After
// gets nothing more until then.
func TestRetryAfterHonoured(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{}, models.Backend{Name: "a"}, models.Backend{Name: "b", Priority: 1})
	f.sims[0].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 429}}) // Retry-After: 1
	for i := 0; i < 4; i++ {
		if got, err := f.send(false); err != nil || !strings.HasPrefix(got, "b:") {
			t.Fatalf("%q, %v", got, err)
		}
	}
	if n, s := f.requests(0), status(f, "a"); n != 1 || s.RetryAt == nil || s.State != models.StateClosed {
		t.Errorf("backend a: %d requests, %+v; want 1, waiting, breaker closed (a 429 is no fault)", n, s)
	}
}

// TestConcurrencyCap: a backend at its max_concurrency is passed over;
// with every backend full, the answer says to retry.
func TestConcurrencyCap(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{}, models.Backend{Name: "a", MaxConcurrency: 1}, models.Backend{Name: "b", Priority: 1, MaxConcurrency: 1})
	for _, s := range f.sims {
		s.SetConfig(sim.Config{ReplyTokens: 3, FirstTokenDelay: 150 * time.Millisecond})
	}
	f.model.Timeouts.FirstToken = time.Second
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = f.send(true)
		}()
		poll.Until(t, "the request at a backend", func() bool { return f.requests(0)+f.requests(1) == int64(i+1) })
	}
	_, err := f.send(true)
	var ua *models.UnavailableError
	if !errors.As(err, &ua) || ua.RetryAfter <= 0 {
		t.Errorf("with both backends full: %v", err)
	}
	wg.Wait()
	if !strings.HasPrefix(got[0], "a:") || !strings.HasPrefix(got[1], "b:") {
		t.Errorf("answers from %.2q and %.2q, want a then b", got[0], got[1])
	}
}

// TestEveryBackendFails: the last failure is the answer.
func TestEveryBackendFails(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{}, models.Backend{Name: "a"}, models.Backend{Name: "b"})
	for _, s := range f.sims {
		s.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
	}
	_, err := f.send(false)
	var ue *models.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 500 || f.requests(0)+f.requests(1) != 2 {
		t.Errorf("%v after %d attempts", err, f.requests(0)+f.requests(1))
	}
}

// TestUnfitBackendKeepsItsProbe: a request that cannot be written for a
// half-open backend's dialect passes it over without taking its probe, so
// the next request that can still probes it.
func TestUnfitBackendKeepsItsProbe(t *testing.T) {
	f := newFleet(t, models.BreakerOptions{Failures: 1, Cooldown: 50 * time.Millisecond, Probes: 1},
		models.Backend{Name: "a", Dialect: models.Anthropic}, models.Backend{Name: "b", Priority: 1})
	both := func() ([]byte, error) { return []byte(body), nil }
	send := func(b models.Body) string {
		t.Helper()
		resp, err := f.c.Send(context.Background(), f.model, models.ChatAPI, b, false)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Backend.Name
	}
	f.sims[0].SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
	if got := send(models.Body{OpenAI: both, Anthropic: both}); got != "b" {
		t.Fatalf("with a failing: answered by %s", got)
	}
	f.sims[0].SetConfig(sim.Config{ReplyTokens: 3})
	poll.Until(t, "the cooldown", func() bool { return status(f, "a").RetryAt == nil })
	if got := send(models.Bytes([]byte(body))); got != "b" {
		t.Fatalf("an OpenAI-only request: answered by %s", got)
	}
	if got := send(models.Body{OpenAI: both, Anthropic: both}); got != "a" {
		t.Errorf("the probe after an unfit request: answered by %s, want a", got)
	}
	if n := f.requests(0); n != 2 {
		t.Errorf("backend a: %d requests, want 2", n)
	}
}
