package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// streamsCmd holds many streams open at once through obol, against a slow
// simulator, and reports obol's resident memory and goroutines when idle,
// with every stream open, and after they all closed. The client side
// speaks h2c (the streams share a few connections: the gateway holds one
// descriptor per stream, its upstream connection), or HTTP/1.1 with
// -http1 (a connection per stream: two descriptors each in the gateway);
// the descriptor limit is raised first, for this process and the ones it
// starts.
func streamsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	fs.SetOutput(stderr)
	obolBin := fs.String("obol", "bin/obol", "the obol binary")
	redisURL := fs.String("redis", "", "Redis for obol's counters (empty: in process; needs -postgres)")
	pgURL := fs.String("postgres", "", "PostgreSQL for obol's records, migrated at start (empty: the embedded store)")
	n := fs.Int("n", 10000, "streams held open at once")
	tokens := fs.Int("tokens", 20, "tokens per stream")
	tps := fs.Float64("tps", 1, "simulator tokens per second per stream")
	idleWait := fs.Duration("after", 150*time.Second, "wait after the streams close before the last reading (obol's idle upstream connections expire after 90 s, and Go collects an idle heap every 2 min)")
	var env []string
	fs.Func("env", "NAME=value for obol's environment (e.g. GOMEMLIMIT=450MiB); repeatable", func(s string) error {
		if !strings.Contains(s, "=") {
			return errors.New("want NAME=value")
		}
		env = append(env, s)
		return nil
	})
	heapProfile := fs.String("heap", "", "write obol's heap profile, with every stream open, to this file")
	heapAfter := fs.String("heap-after", "", "write obol's heap profile, at the last reading, to this file")
	http1 := fs.Bool("http1", false, "clients speak HTTP/1.1, a connection per stream (default h2c)")
	backendH2C := fs.Bool("backend-h2c", true, "obol speaks h2c to the simulator, its streams on a few connections (false: HTTP/1.1, a connection per stream)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := raiseNoFile(4**n + 1000); err != nil {
		fmt.Fprintf(stderr, "descriptor limit not raised: %v\n", err)
	}
	ps, err := newProcs("obol-streams")
	if err != nil {
		return err
	}
	defer ps.close()
	_, simURL, err := ps.start("sim", nil, ps.self, "sim", "-tokens", strconv.Itoa(*tokens), "-tps", strconv.FormatFloat(*tps, 'f', -1, 64))
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	admin := "127.0.0.1:" + strconv.Itoa(port)
	secret := "sk-bench-" + randHex(12)
	cfg, err := obolConfig(ps.dir, "obol", *redisURL, *pgURL, simURL, secret, fmt.Sprintf("admin_listen: %q\npprof: true\nh2c: true\n", admin), *backendH2C)
	if err != nil {
		return err
	}
	obol, obolURL, err := ps.start("obol", env, *obolBin, "serve", "-config", cfg)
	if err != nil {
		return err
	}
	pid := obol.Process.Pid
	reading := func(label string) (string, error) {
		g, err := goroutines(admin)
		if err != nil {
			return "", err
		}
		heap, stacks, err := memstats(admin)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%-28s %8.1f MB %8.1f MB %8.1f MB %10d\n", label, mb(rss(pid)), mb(heap), mb(stacks), g), nil
	}

	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2, DisableCompression: true}
	clients := "h2c clients"
	if *http1 {
		tr = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: *n}
		clients = "HTTP/1.1 clients, a connection each"
	}
	if *backendH2C {
		clients += ", h2c to the backend"
	} else {
		clients += ", HTTP/1.1 to the backend"
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	body := []byte(`{"model":"hermes","messages":[{"role":"user","content":"Hold this stream open, please."}],"max_tokens":` + strconv.Itoa(*tokens) + `,"stream":true}`)

	// A few short streams first, so that idle is obol after its first
	// requests.
	short := bytes.Replace(body, []byte(`"max_tokens":`+strconv.Itoa(*tokens)), []byte(`"max_tokens":1`), 1)
	if _, err := holdStreams(ctx, hc, obolURL, secret, short, 5, nil); err != nil {
		return err
	}
	time.Sleep(time.Second)
	idle, err := reading("idle")
	if err != nil {
		return err
	}
	var open string
	fmt.Fprintf(stderr, "opening %d streams\n", *n)
	start := time.Now()
	done, err := holdStreams(ctx, hc, obolURL, secret, body, *n, func() {
		open, err = reading(fmt.Sprintf("%d streams open", *n))
		if *heapProfile != "" {
			if herr := fetch(admin, "/debug/pprof/heap", *heapProfile); herr != nil {
				fmt.Fprintf(stderr, "heap profile: %v\n", herr)
			}
		}
		fmt.Fprintf(stderr, "all %d streams open after %s\n", *n, time.Since(start).Round(time.Millisecond))
	})
	if err != nil {
		return err
	}
	tr.CloseIdleConnections()
	closed, err := reading("just after they closed")
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "waiting %s for idle connections to expire\n", *idleWait)
	select {
	case <-time.After(*idleWait):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := reading(fmt.Sprintf("%s after", *idleWait))
	if err != nil {
		return err
	}
	if *heapAfter != "" {
		// After two collections (the first leaves sync.Pools' victims):
		// what is still reachable, not what waits for the next one.
		for range 2 {
			if herr := fetch(admin, "/debug/pprof/heap?gc=1", *heapAfter); herr != nil {
				fmt.Fprintf(stderr, "heap profile: %v\n", herr)
			}
		}
		if after2, herr := reading("after two collections"); herr == nil {
			after += after2
		}
	}
	store := "embedded store"
	if *redisURL != "" {
		store = "Redis"
	}
	fmt.Fprintf(stdout, "\n%d concurrent streams through obol (%s, %s), %d tokens at %.0f/s each, %s %s\n\n",
		*n, store, clients, *tokens, *tps, strings.Join(env, " "), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "%-28s %11s %11s %11s %10s\n%s%s%s%s", "", "RSS", "heap in use", "stacks", "goroutines", idle, open, closed, after)
	fmt.Fprintf(stdout, "streams completed with [DONE]: %d of %d\n", done, *n)
	return nil
}

// holdStreams opens n streams at once and reads each to its end. When
// every one has had its first token, and before any can end, it calls
// open (once). It returns how many ended with [DONE].
func holdStreams(ctx context.Context, hc *http.Client, base, key string, body []byte, n int, open func()) (int, error) {
	var first, ok atomic.Int64
	var wg sync.WaitGroup
	allOpen := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err
				first.Add(1)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
				first.Add(1)
				return
			}
			br := bufio.NewReader(resp.Body)
			seen := false
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					break
				}
				if !seen && bytes.Contains(line, []byte(`"content":"`)) && !bytes.Contains(line, []byte(`"content":""`)) {
					seen = true
					if first.Add(1) == int64(n) {
						close(allOpen)
					}
					<-allOpen // hold until every stream is open and measured
				}
				if bytes.HasPrefix(line, []byte("data: [DONE]")) {
					ok.Add(1)
				}
			}
			if !seen && first.Add(1) == int64(n) {
				close(allOpen)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(errs)
	}()
	select {
	case <-allOpen:
	case <-ctx.Done():
	}
	var failed []error
	if open != nil && ctx.Err() == nil {
		open()
	}
	wg.Wait()
	for err := range errs {
		failed = append(failed, err)
	}
	if len(failed) > 0 {
		return int(ok.Load()), fmt.Errorf("%d of %d streams failed, the first: %w", len(failed), n, failed[0])
	}
	return int(ok.Load()), ctx.Err()
}

// fetch writes what obol's admin listener serves at path to file.
func fetch(admin, path, file string) error {
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// memstats reads obol's heap and stack bytes in use from its /metrics.
func memstats(admin string) (heap, stacks int64, err error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range []struct {
		name string
		v    *int64
	}{{"go_memstats_heap_inuse_bytes", &heap}, {"go_memstats_stack_inuse_bytes", &stacks}} {
		v := regexp.MustCompile(`(?m)^` + m.name + ` (\S+)$`).FindSubmatch(b)
		if v == nil {
			return 0, 0, errors.New("/metrics lacks " + m.name)
		}
		f, _ := strconv.ParseFloat(string(v[1]), 64)
		*m.v = int64(f)
	}
	return heap, stacks, nil
}

// rss is a process's resident memory in bytes, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// goroutines is obol's goroutine count, from its profile endpoint.
func goroutines(admin string) (int, error) {
	resp, err := http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	total, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, errors.New("goroutine profile: unexpected " + line)
	}
	return strconv.Atoi(total)
}

// raiseNoFile lifts this process's descriptor limit to at least n (the
// hard limit too, which root may), so that it and the processes it starts
// can hold n connections.
func raiseNoFile(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(n) {
		return nil
	}
	lim.Cur = uint64(n)
	lim.Max = max(lim.Max, uint64(n))
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
