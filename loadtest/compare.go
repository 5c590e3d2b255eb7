package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/pgdb"
	"github.com/obol/obol/internal/redisinfo"
)

// proxyCmd serves a bare httputil.ReverseProxy: the floor a gateway is
// measured against (no auth, quota, ledger or relay logic).
func proxyCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9100", "listen address")
	target := fs.String("target", "http://127.0.0.1:9000", "upstream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	rp.FlushInterval = -1 // flush each write, as a streaming proxy must
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// compareCmd runs one load, in one run, against the simulator directly,
// a bare ReverseProxy in front of it, obol with its embedded store, with
// its records in PostgreSQL and with Redis, and prints each one's
// throughput, latency and CPU per request side by side, as ratios to the
// ReverseProxy.
func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadConfig
	c.flags(fs)
	var o compareOptions
	fs.StringVar(&o.obolBin, "obol", "bin/obol", "the obol binary")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis for the Redis + PostgreSQL variant (empty: skip it)")
	fs.StringVar(&o.pgURL, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		"PostgreSQL for the variants that keep records there, in a schema of their own (empty: skip them)")
	fs.IntVar(&o.tokens, "tokens", 20, "tokens per reply (stream chunks)")
	fs.Float64Var(&o.tps, "tps", 0, "simulator tokens per second per stream (0: at once)")
	fs.DurationVar(&o.first, "first-token", 0, "simulator delay before the first token")
	fs.StringVar(&o.profileDir, "profile", "", "write each obol's CPU profile of the measured load to this directory")
	fs.StringVar(&o.logLevel, "log-level", "info", "obol's log level (info, the default, writes an access-log line per request)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(o.obolBin); err != nil {
		return fmt.Errorf("-obol %s: %w (make build)", o.obolBin, err)
	}
	ps, err := newProcs("obol-compare")
	if err != nil {
		return err
	}
	defer ps.close()
	secret := "sk-bench-" + randHex(12)
	targets, drop, err := startTargets(ctx, ps, o, secret)
	defer drop()
	if err != nil {
		return err
	}
	c.Keys = []string{secret}
	rows, err := measure(ctx, c, targets, o.profileDir, stderr)
	if err != nil {
		return err
	}
	return printRows(stdout, c, o.tokens, rows)
}

// compareOptions are compare's own flags.
type compareOptions struct {
	obolBin, redisURL, pgURL string
	tokens                   int
	tps                      float64
	first                    time.Duration
	profileDir, logLevel     string
}

// target is one process compare loads.
type target struct {
	name  string
	url   string
	proc  *exec.Cmd // whose CPU is counted
	admin string    // obol's admin listener, with -profile
	redis string    // the Redis whose CPU is counted too
	pg    bool      // PostgreSQL's CPU is counted too
}

// startTargets starts the simulator, the floor in front of it and each
// obol variant; drop removes the PostgreSQL schema they used.
func startTargets(ctx context.Context, ps *procs, o compareOptions, secret string) (targets []target, drop func(), err error) {
	drop = func() {}
	simCmd, simURL, err := ps.start("sim", nil, ps.self, "sim", "-tokens", strconv.Itoa(o.tokens),
		"-tps", strconv.FormatFloat(o.tps, 'f', -1, 64), "-first-token", o.first.String())
	if err != nil {
		return nil, drop, err
	}
	proxyProc, proxyURL, err := ps.start("proxy", nil, ps.self, "proxy", "-target", simURL)
	if err != nil {
		return nil, drop, err
	}
	targets = []target{{"simulator (direct)", simURL, simCmd, "", "", false}, {"ReverseProxy (floor)", proxyURL, proxyProc, "", "", false}}
	variants := []struct{ name, label, redis, pg string }{{"embedded", "obol, embedded store", "", ""}}
	if o.pgURL != "" {
		schema, err := benchSchema(ctx, o.pgURL)
		if err != nil {
			return nil, drop, err
		}
		drop = schema.drop
		variants = append(variants, struct{ name, label, redis, pg string }{"postgres", "obol, PostgreSQL", "", schema.url})
		if o.redisURL != "" {
			variants = append(variants, struct{ name, label, redis, pg string }{"redis", "obol, Redis + PostgreSQL", o.redisURL, schema.url})
		}
	}
	for _, v := range variants {
		extra, admin := "log: {level: "+o.logLevel+"}\n", ""
		if o.profileDir != "" {
			port, err := freePort()
			if err != nil {
				return nil, drop, err
			}
			admin = fmt.Sprintf("127.0.0.1:%d", port)
			extra += fmt.Sprintf("admin_listen: %q\npprof: true\n", admin)
		}
		cfg, err := obolConfig(ps.dir, v.name, v.redis, v.pg, simURL, secret, extra, false)
		if err != nil {
			return nil, drop, err
		}
		proc, url, err := ps.start("obol-"+v.name, nil, o.obolBin, "serve", "-config", cfg)
		if err != nil {
			return nil, drop, err
		}
		targets = append(targets, target{v.label, url, proc, admin, v.redis, v.pg != ""})
	}
	return targets, drop, nil
}

// row is one target's measurement.
type row struct {
	name  string
	rep   *report
	cpu   time.Duration // of the target's own process, during the measured load
	gen   time.Duration // of this load generator, meanwhile
	redis time.Duration // of Redis, meanwhile (-1: not used)
	pg    time.Duration // of PostgreSQL's processes, meanwhile (-1: not used)
}

// measure runs the load against each target in turn, counting CPU over
// the measured part (and keeping obol's profile of it, with profileDir).
func measure(ctx context.Context, c loadConfig, targets []target, profileDir string, stderr io.Writer) ([]row, error) {
	var rows []row
	for _, t := range targets {
		lc := c
		lc.Target = t.url
		var before, genBefore, redisBefore, pgBefore time.Duration
		profiled := make(chan error, 1)
		lc.onStart = func() {
			before, genBefore = cpuTime(t.proc.Process.Pid), cpuTime(os.Getpid())
			if t.redis != "" {
				redisBefore = redisCPU(ctx, t.redis)
			}
			if t.pg {
				pgBefore = postgresCPU()
			}
			if t.admin != "" {
				go func() {
					profiled <- fetchProfile(t.admin, lc.Duration, filepath.Join(profileDir, profileName(t.name)))
				}()
			}
		}
		rep, err := runLoad(ctx, lc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		if t.admin != "" {
			if err := <-profiled; err != nil {
				return nil, fmt.Errorf("%s: profile: %w", t.name, err)
			}
		}
		r := row{t.name, rep, cpuTime(t.proc.Process.Pid) - before, cpuTime(os.Getpid()) - genBefore, -1, -1}
		if t.redis != "" {
			r.redis = redisCPU(ctx, t.redis) - redisBefore
		}
		if t.pg {
			r.pg = postgresCPU() - pgBefore
		}
		rows = append(rows, r)
		rep.print(stderr, t.name)
	}
	return rows, nil
}

// printRows prints the table: each target against the floor (rows[1]),
// latencies added over the simulator's (rows[0]).
func printRows(stdout io.Writer, c loadConfig, tokens int, rows []row) error {
	mode := fmt.Sprintf("closed loop, %d connections", c.Conns)
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f requests/s", c.Rate)
	}
	kind := "non-streaming"
	if c.Stream {
		kind = fmt.Sprintf("streaming, %d chunks", tokens)
	}
	fmt.Fprintf(stdout, "\n%s, %s, %s per target, %s\n\n", kind, mode, c.Duration, time.Now().UTC().Format("2006-01-02"))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\treq/s\t× floor\tp50\tp99\tp50 added\tp99 TTFT\tadded\tCPU µs/req\t× floor\tRedis µs/req\tPostgreSQL µs/req\twith stores × floor\tgen µs/req\terrors\t\n")
	floor := rows[1]
	floorCPU := perRequest(floor.cpu, floor.rep)
	for _, r := range rows {
		cpu := perRequest(r.cpu, r.rep)
		errs := r.rep.Requests - len(r.rep.Latencies)
		stores, all := func(d time.Duration) string {
			if d < 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", perRequest(d, r.rep))
		}, cpu
		for _, d := range []time.Duration{r.redis, r.pg} {
			if d > 0 {
				all += perRequest(d, r.rep)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.2f\t%s\t%s\t%.2f\t%.1f\t%d\t\n", r.name, r.rep.Throughput, r.rep.Throughput/floor.rep.Throughput,
			round(pct(r.rep.Latencies, 50)), round(pct(r.rep.Latencies, 99)),
			round(pct(r.rep.Latencies, 50)-pct(rows[0].rep.Latencies, 50)), round(pct(r.rep.TTFT, 99)),
			round(pct(r.rep.TTFT, 99)-pct(rows[0].rep.TTFT, 99)),
			cpu, cpu/floorCPU, stores(r.redis), stores(r.pg), all/floorCPU, perRequest(r.gen, r.rep), errs)
	}
	return tw.Flush()
}

// fetchProfile writes the CPU profile of the obol whose admin listener is
// at addr, over the next d, to path.
func fetchProfile(addr string, d time.Duration, path string) error {
	secs := max(1, int(d/time.Second))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileName is a file name for a target's profile: "obol, Redis +
// PostgreSQL" is obol-redis.pprof.
func profileName(target string) string {
	switch {
	case strings.Contains(target, "Redis"):
		return "obol-redis.pprof"
	case strings.Contains(target, "PostgreSQL"):
		return "obol-postgres.pprof"
	}
	return "obol-embedded.pprof"
}

// obolConfig writes dir/name.yaml: obol with the defaults a user runs
// (access log at info, JSON) in front of the simulator, with
// one key (secret) whose limits never refuse, in a project whose limits
// and monthly budget never refuse either (so both levels are decided and
// every request is priced and charged), counters in the Redis at
// redisURL and records in the PostgreSQL at pgURL (each empty: the
// embedded store), and extra top-level YAML; backendH2C: obol speaks
// h2c to the simulator.
func obolConfig(dir, name, redisURL, pgURL, simURL, secret, extra string, backendH2C bool) (string, error) {
	d := sha256.Sum256([]byte(secret))
	prefix := "obol-bench:" + randHex(4) + ":"
	cfg := fmt.Sprintf(`listen: "127.0.0.1:0"
%sdata_dir: %q
redis: {url: %q, prefix: %q}
postgres: {url: %q}
tiers:
  bench: {rpm: 1000000000, tpm: 1000000000000, tpd: 1000000000000000}
models:
  hermes:
    context_window: 32768
    price: {input: 0.5, output: 1.5}
    backends: [{url: %q, model: "sim", h2c: %t}]
keys:
  - {id: key_bench, tier: bench, sha256: %q, project: bench, budget: {monthly: 1000000}}
projects:
  bench: {limits: {rpm: 1000000000, concurrency: 100000}, budget: {monthly: 1000000}}
`, extra, filepath.Join(dir, name), redisURL, prefix, pgURL, simURL+"/v1", backendH2C, hex.EncodeToString(d[:]))
	p := filepath.Join(dir, name+".yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// procs are the processes of a measurement: the simulator, the floor and
// obol, each with its log in dir, all killed by close.
type procs struct {
	self string // this program, which serves the simulator and the floor
	dir  string
	cmds []*exec.Cmd
}

func newProcs(name string) (*procs, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return nil, err
	}
	return &procs{self: self, dir: dir}, nil
}

func (ps *procs) close() {
	for _, c := range ps.cmds {
		c.Process.Kill()
		c.Wait()
	}
	os.RemoveAll(ps.dir)
}

// start starts bin with args and -addr on a free port, its output in
// dir/name.log, and waits until it listens.
func (ps *procs) start(name string, env []string, bin string, args ...string) (*exec.Cmd, string, error) {
	cmd, url, err := startProc(ps.dir, name, env, bin, args...)
	if cmd != nil {
		ps.cmds = append(ps.cmds, cmd) // killed by close even if it did not listen
	}
	return cmd, url, err
}

func startProc(dir, name string, env []string, bin string, args ...string) (*exec.Cmd, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, append(args, "-addr", addr)...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	if err := waitListening(addr, 10*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
		return cmd, "", fmt.Errorf("%s did not start: %v\n%s", name, err, b)
	}
	return cmd, "http://" + addr, nil
}

func perRequest(cpu time.Duration, r *report) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(r.Requests)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second || d < -time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond || d < -time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// redisCPU is the CPU time Redis at url has used so far (INFO cpu), or 0
// when it cannot be asked.
func redisCPU(ctx context.Context, url string) time.Duration {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return 0
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	d, _ := redisinfo.CPU(ctx, rdb)
	return d
}

// postgresCPU is the CPU time so far of every process named postgres
// (the server and its backends), from /proc: a backend that ends during
// a measurement takes its CPU with it, so obol's pooled connections,
// which stay, are what is counted.
func postgresCPU() time.Duration {
	entries, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			total += cpuTime(pid)
		}
	}
	return total
}

// cpuTime is a process's user + system CPU time so far, from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// schema is a PostgreSQL schema of a measurement's own.
type schema struct {
	url  string
	drop func()
}

// benchSchema makes an empty schema for the obols of a measurement (they
// migrate it at start) and a drop for its end.
func benchSchema(ctx context.Context, url string) (*schema, error) {
	pool, err := pgdb.Open(ctx, url, pgdb.Options{ConnectTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	name := "obol_bench_" + randHex(6)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		pool.Close()
		return nil, fmt.Errorf("-postgres %s: %w (or -postgres \"\" to skip the PostgreSQL variants)", url, err)
	}
	return &schema{url: pgdb.WithSchema(url, name), drop: func() {
		pool.Exec(context.Background(), "DROP SCHEMA "+name+" CASCADE")
		pool.Close()
	}}, nil
}
