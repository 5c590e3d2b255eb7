// Command loadtest holds obol's load tools:
//
//	go run ./loadtest sim [-addr 127.0.0.1:9000] [-tokens 16] [-tps 0] [-first-token 0s] [-fault none]
//	                      [-cache-read 0] [-cache-write-5m 0] [-cache-write-1h 0] [-cache-write-total-only]
//	go run ./loadtest load -target http://127.0.0.1:8080 [-conns 50 | -rate 1000] [-stream] [-duration 10s]
//	go run ./loadtest proxy -addr 127.0.0.1:9100 -target http://127.0.0.1:9000
//	go run ./loadtest compare -obol bin/obol [-conns 50 | -rate R] [-stream] [-tokens 20]
//
// sim is the upstream simulator (OpenAI-compatible, and Anthropic's /v1/messages); load sends a load and
// reports throughput, latency percentiles, time to first token and gaps
// between tokens, and answers by status and code; proxy is a bare
// httputil.ReverseProxy, the floor; compare runs one load against the
// simulator, the floor, obol with its embedded store and obol with Redis,
// side by side.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/obol/obol/loadtest/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: loadtest sim|load|proxy|compare|streams [flags]")
	}
	switch args[0] {
	case "load":
		fs := flag.NewFlagSet("load", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var c loadConfig
		c.flags(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		rep, err := runLoad(ctx, c)
		if err != nil {
			return err
		}
		rep.print(os.Stdout, c.Target)
		return nil
	case "proxy":
		return proxyCmd(ctx, args[1:], stderr)
	case "compare":
		return compareCmd(ctx, args[1:], os.Stdout, stderr)
	case "streams":
		return streamsCmd(ctx, args[1:], os.Stdout, stderr)
	case "sim":
	default:
		return fmt.Errorf("unknown command %q: want sim, load, proxy, compare or streams", args[0])
	}
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address (loopback)")
	tokens := fs.Int("tokens", sim.DefaultReplyTokens, "tokens per reply")
	tps := fs.Float64("tps", 0, "tokens per second per stream; 0 = as fast as possible")
	first := fs.Duration("first-token", 0, "delay before the first token")
	noUsage := fs.Bool("no-usage", false, "never report usage, even when asked")
	worst := fs.Bool("worst-case", false, "bill prompts as the worst byte-level tokenizer would: a token per byte the model reads")
	fault := fs.String("fault", "none", "inject a fault into every request: none, status:CODE, stream-error:AFTER, disconnect:AFTER, hang:AFTER")
	cacheRead := fs.Int("cache-read", 0, "prompt tokens reported read from the cache (cached_tokens; Anthropic's cache_read_input_tokens)")
	write5m := fs.Int("cache-write-5m", 0, "prompt tokens an Anthropic answer reports written to the cache for 5 minutes")
	write1h := fs.Int("cache-write-1h", 0, "prompt tokens an Anthropic answer reports written to the cache for an hour")
	totalOnly := fs.Bool("cache-write-total-only", false, "report only cache_creation_input_tokens, as older Anthropic answers do")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	f, err := parseFault(*fault)
	if err != nil {
		return err
	}
	s := sim.New(sim.Config{ReplyTokens: *tokens, TokensPerSecond: *tps, FirstTokenDelay: *first, NoUsage: *noUsage, WorstCase: *worst, Fault: f,
		CachedTokens: *cacheRead, CacheWrite5m: *write5m, CacheWrite1h: *write1h, CacheWriteTotalOnly: *totalOnly})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log.Printf("simulator listening on http://%s/v1", ln.Addr())
	// HTTP/1.1 and h2c (prior knowledge) both, as Go servers and gRPC
	// gateways can: a gateway may multiplex its streams.
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols),
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000}}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func parseFault(s string) (sim.Fault, error) {
	if s == "none" || s == "" {
		return sim.Fault{}, nil
	}
	kind, num, _ := strings.Cut(s, ":")
	n, err := strconv.Atoi(num)
	if err != nil {
		return sim.Fault{}, fmt.Errorf("fault %q: want KIND:N", s)
	}
	switch kind {
	case "status":
		return sim.Fault{Kind: sim.Status, Status: n}, nil
	case "stream-error":
		return sim.Fault{Kind: sim.StreamError, After: n}, nil
	case "disconnect":
		return sim.Fault{Kind: sim.Disconnect, After: n}, nil
	case "hang":
		return sim.Fault{Kind: sim.Hang, After: n}, nil
	}
	return sim.Fault{}, fmt.Errorf("fault %q: unknown kind", s)
}
