// Package redistest gives tests real Redis: the shared server of
// REDIS_URL (default 127.0.0.1:6379) under a key prefix of their own, or
// redis-server processes of their own, to stop, restart or cluster.
package redistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/freeport"
	"github.com/obol/obol/internal/redisinfo"
)

// URL is the shared test Redis: REDIS_URL, or the local default.
func URL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Shared connects to the shared test Redis and returns a key prefix of the
// test's own; its keys are deleted at the end. It fails the test, saying
// what is missing, when no Redis answers.
func Shared(t testing.TB) (*redis.Client, string) {
	t.Helper()
	skipShort(t)
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", URL(), err)
	}
	rdb := redis.NewClient(opt)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		t.Fatalf("this test needs a real Redis and none answers at %s (%v): start redis-server or set REDIS_URL", URL(), err)
	}
	prefix := "obol-test:" + randHex(6) + ":"
	t.Cleanup(func() {
		defer rdb.Close()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return rdb, prefix
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Server is a redis-server process owned by one test.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// Start runs redis-server on a free loopback port with no persistence; it
// is killed when the test ends. extra are more redis-server arguments.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	skipShort(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test runs its own Redis and needs redis-server on PATH (apt-get install redis-server): %v", err)
	}
	s := &Server{t: t, Port: freeport.Get(t), dir: t.TempDir()}
	s.args = append([]string{bin, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, extra...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() {
	s.t.Helper()
	var out bytes.Buffer
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	for i := 0; ; i++ {
		if rdb.Ping(context.Background()).Err() == nil {
			return
		}
		if i == 200 {
			s.t.Fatalf("redis-server on %s did not answer: %s", s.Addr(), out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies too
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Flush empties the server (FLUSHALL), as an operator's mistake or a
// failover to an empty replica would.
func (s *Server) Flush() {
	s.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		s.t.Fatalf("FLUSHALL: %v", err)
	}
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Cluster starts n masters with cluster mode on and joins them, all 16384
// slots assigned; it returns their addresses.
func Cluster(t testing.TB, n int) []string {
	t.Helper()
	skipShort(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("the cluster test needs redis-cli on PATH: %v", err)
	}
	var addrs []string
	for i := 0; i < n; i++ {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	ctx := context.Background()
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for i := 0; ; i++ {
			info, _ := c.ClusterInfo(ctx).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if i == 400 {
				c.Close()
				t.Fatalf("cluster node %s not ready: %s", a, info)
			}
			time.Sleep(25 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

// Pause stops the server's process without closing its sockets (SIGSTOP):
// a Redis that accepts and never answers, as in a network partition.
func (s *Server) Pause() { s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// StartSentinel runs a Redis Sentinel watching master under the name
// master; it is killed when the test ends.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	skipShort(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test runs its own Redis Sentinel and needs redis-server on PATH: %v", err)
	}
	s := &Server{t: t, Port: freeport.Get(t), dir: t.TempDir()}
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		s.Port, s.dir, name, master.Port)
	path := s.dir + "/sentinel.conf"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{bin, path, "--sentinel"}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// ClusterClient starts a cluster of n masters (the test is skipped with
// -short) and returns a client of it, closed when the test ends, and the
// masters' addresses.
func ClusterClient(t testing.TB, n int) (redis.UniversalClient, []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	addrs := Cluster(t, n)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb, addrs
}

// MastersUsed counts the masters that hold at least one key, so that a
// cluster test can tell that its keys were spread.
func MastersUsed(t testing.TB, addrs []string) int {
	t.Helper()
	used := 0
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		if n, _ := c.DBSize(context.Background()).Result(); n > 0 {
			used++
		}
		c.Close()
	}
	return used
}

// CPU is the CPU time the Redis server behind rdb has used so far:
// benchmarks report Redis's own cost per operation from two readings.
func CPU(t testing.TB, rdb redis.UniversalClient) time.Duration {
	t.Helper()
	d, err := redisinfo.CPU(context.Background(), rdb)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// skipShort skips a test that needs a real Redis under go test -short (make
// test-short): the fast layer of tests runs without any store.
func skipShort(t testing.TB) {
	if testing.Short() {
		t.Skip("needs a real Redis: skipped under -short")
	}
}
