package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// loadConfig is one load: what to send, how hard, for how long.
type loadConfig struct {
	Target    string        // base URL, e.g. http://127.0.0.1:8080
	Path      string        // /v1/chat/completions
	Stream    bool          // stream: true
	Conns     int           // closed loop: connections, each sending back to back
	Rate      float64       // open loop: requests per second (0: closed loop)
	Duration  time.Duration // how long to send
	Requests  int           // stop after this many (0: no bound but Duration)
	Keys      []string      // API keys, used in turn
	Models    []string      // models, used in turn
	MaxTokens int           // max_tokens of every request
	Warmup    time.Duration // sent but not counted
	onStart   func()        // called once the warm-up is over
}

func (c *loadConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL (loopback only)")
	fs.StringVar(&c.Path, "path", "/v1/chat/completions", "route")
	fs.BoolVar(&c.Stream, "stream", false, "ask for streamed answers")
	fs.IntVar(&c.Conns, "conns", 50, "closed loop: connections sending back to back")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second, scheduled whatever the answers (0: closed loop)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&c.Requests, "requests", 0, "stop after this many requests (0: only the duration bounds it)")
	fs.IntVar(&c.MaxTokens, "max-tokens", 20, "max_tokens of every request")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "sent first and not counted")
	fs.Func("keys", "comma-separated API keys, used in turn (default sk-demo-team-c03d88)", func(s string) error {
		c.Keys = strings.Split(s, ",")
		return nil
	})
	fs.Func("models", "comma-separated models, used in turn (default hermes)", func(s string) error {
		c.Models = strings.Split(s, ",")
		return nil
	})
}

func (c *loadConfig) check() error {
	if len(c.Keys) == 0 {
		c.Keys = []string{"sk-demo-team-c03d88"}
	}
	if len(c.Models) == 0 {
		c.Models = []string{"hermes"}
	}
	u, err := url.Parse(c.Target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q: want a URL", c.Target)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("-target %q: only loopback targets are allowed", c.Target)
	}
	if c.Conns <= 0 || c.Duration <= 0 {
		return errors.New("-conns and -duration must be positive")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// result is one request's measure.
type result struct {
	latency time.Duration   // scheduled start (open loop) or send (closed) to the last byte
	ttft    time.Duration   // to the first token (streams)
	gaps    []time.Duration // between tokens (streams)
	status  int             // 0: no answer
	code    string          // the error's code, for non-200s
	cut     bool            // a stream that ended in an error event
}

// report is a load's outcome.
type report struct {
	Requests   int
	Elapsed    time.Duration
	Latencies  []time.Duration
	TTFT       []time.Duration
	Gaps       []time.Duration
	ByStatus   map[string]int // "200", "429 rate_limit", "error: …"
	Throughput float64        // completed requests per second
}

// runLoad sends the load and measures it.
func runLoad(ctx context.Context, c loadConfig) (*report, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: c.Conns, MaxConnsPerHost: c.Conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	bodies := make([][]byte, len(c.Models))
	for i, m := range c.Models {
		bodies[i] = []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello to the load generator, please."}],"max_tokens":%d,"stream":%v}`,
			m, c.MaxTokens, c.Stream))
	}
	if c.Warmup > 0 {
		w := c
		w.Duration, w.Requests, w.Warmup = c.Warmup, 0, 0
		drive(ctx, hc, w, bodies, nil)
	}
	if c.onStart != nil {
		c.onStart()
	}
	var mu sync.Mutex
	var results []result
	start := time.Now()
	drive(ctx, hc, c, bodies, func(r result) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	})
	rep := &report{Elapsed: time.Since(start), ByStatus: map[string]int{}}
	for _, r := range results {
		rep.Requests++
		key := fmt.Sprint(r.status)
		if r.status != 200 {
			key += " " + r.code
		} else if r.cut {
			key = "200 cut"
		}
		rep.ByStatus[key]++
		if r.status == 200 && !r.cut {
			rep.Latencies = append(rep.Latencies, r.latency)
			if r.ttft > 0 {
				rep.TTFT = append(rep.TTFT, r.ttft)
			}
			rep.Gaps = append(rep.Gaps, r.gaps...)
		}
	}
	rep.Throughput = float64(len(rep.Latencies)) / rep.Elapsed.Seconds()
	for _, s := range [][]time.Duration{rep.Latencies, rep.TTFT, rep.Gaps} {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	return rep, nil
}

// drive sends requests, closed or open loop, until the duration or the
// count is reached; done gets each result (nil: warm-up).
func drive(ctx context.Context, hc *http.Client, c loadConfig, bodies [][]byte, done func(result)) {
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	var n sync.Mutex
	issued := 0
	next := func() (int, bool) {
		n.Lock()
		defer n.Unlock()
		if c.Requests > 0 && issued >= c.Requests {
			return 0, false
		}
		issued++
		return issued - 1, true
	}
	one := func(i int, scheduled time.Time) {
		r := send(ctx, hc, c, c.Keys[i%len(c.Keys)], bodies[i%len(bodies)], scheduled)
		if done != nil && ctx.Err() == nil {
			done(r)
		}
	}
	var wg sync.WaitGroup
	if c.Rate <= 0 {
		for w := 0; w < c.Conns; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i, ok := next()
					if !ok {
						return
					}
					one(i, time.Now())
				}
			}()
		}
		wg.Wait()
		return
	}
	// Open loop: request i is due at start + i/rate, sent then whatever
	// the earlier ones are doing, and timed from when it was due, so that
	// a stall shows in the latencies instead of hiding (coordinated
	// omission).
	start := time.Now()
	interval := time.Duration(float64(time.Second) / c.Rate)
	for ctx.Err() == nil {
		i, ok := next()
		if !ok {
			break
		}
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			one(i, due)
		}()
	}
	wg.Wait()
}

// send makes one request and measures it.
func send(ctx context.Context, hc *http.Client, c loadConfig, key string, body []byte, start time.Time) result {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.Target+c.Path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return result{code: "error: " + shortErr(err)}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		r.code = errorCode(b)
		r.latency = time.Since(start)
		return r
	}
	if !c.Stream {
		io.Copy(io.Discard, resp.Body)
		r.latency = time.Since(start)
		return r
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	var last time.Time
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			r.cut = true // ended without [DONE]
			break
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			break
		}
		if bytes.HasPrefix(data, []byte(`{"error"`)) {
			r.cut = true
			continue
		}
		if !bytes.Contains(data, []byte(`"content":"`)) || bytes.Contains(data, []byte(`"content":""`)) {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			r.ttft = now.Sub(start)
		} else {
			r.gaps = append(r.gaps, now.Sub(last))
		}
		last = now
	}
	r.latency = time.Since(start)
	// Read to the end of the body, as SDKs do, so that the connection is
	// reused: a client that leaves it unread pays a new connection for
	// every stream, and so would the load.
	io.Copy(io.Discard, br)
	return r
}

func errorCode(b []byte) string {
	i := bytes.Index(b, []byte(`"code":"`))
	if i < 0 {
		return "?"
	}
	rest := b[i+8:]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return string(rest[:j])
	}
	return "?"
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// pct is the p-th percentile of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// print writes a report for people.
func (r *report) print(w io.Writer, name string) {
	fmt.Fprintf(w, "%s: %d requests in %s, %.0f/s completed\n", name, r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput)
	line := func(what string, s []time.Duration) {
		if len(s) == 0 {
			return
		}
		fmt.Fprintf(w, "  %-8s p50 %-10s p90 %-10s p99 %-10s p99.9 %-10s max %s\n", what,
			pct(s, 50), pct(s, 90), pct(s, 99), pct(s, 99.9), s[len(s)-1])
	}
	line("latency", r.Latencies)
	line("ttft", r.TTFT)
	line("gap", r.Gaps)
	keys := make([]string, 0, len(r.ByStatus))
	for k := range r.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-30s %d\n", k, r.ByStatus[k])
	}
}
