// Package pgtest gives tests real PostgreSQL: a schema of their own in the
// shared server of POSTGRES_URL (default 127.0.0.1:5432, database test),
// migrated and dropped at the end, or a postgres server of their own (initdb
// and pg_ctl under a temp dir, run as the postgres user) to stop and
// restart.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/obol/obol/internal/freeport"
	"github.com/obol/obol/internal/pgdb"
)

// URL is the shared test PostgreSQL: POSTGRES_URL, or the local default.
func URL() string {
	if u := os.Getenv("POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Shared makes a schema of the test's own in the shared test PostgreSQL,
// migrated, and returns a pool whose sessions use it and the URL that
// reaches it (for obol processes). The schema is dropped at the end. It
// fails the test, saying what is missing, when no PostgreSQL answers.
func Shared(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	skipShort(t)
	u := EmptySchema(t)
	pool := open(t, u)
	t.Cleanup(pool.Close) // before the schema is dropped
	return pool, u
}

// EmptySchema makes an empty schema of the test's own in the shared test
// PostgreSQL, dropped at the end, and returns the URL that reaches it.
func EmptySchema(t testing.TB) string {
	t.Helper()
	skipShort(t)
	ctx := context.Background()
	admin, err := pgdb.Open(ctx, URL(), pgdb.Options{ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("POSTGRES_URL %q: %v", URL(), err)
	}
	defer admin.Close()
	schema := "obol_test_" + randHex(6)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("this test needs a real PostgreSQL and none answers at %s (%v): start postgres or set POSTGRES_URL", URL(), err)
	}
	t.Cleanup(func() {
		a, err := pgdb.Open(ctx, URL(), pgdb.Options{})
		if err == nil {
			a.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			a.Close()
		}
	})
	return WithSchema(URL(), schema)
}

// WithSchema is raw with search_path set to schema.
func WithSchema(raw, schema string) string { return pgdb.WithSchema(raw, schema) }

// open connects to u and migrates it.
func open(t testing.TB, u string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgdb.Open(ctx, u, pgdb.Options{ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgdb.Migrate(ctx, pool); err != nil {
		pool.Close()
		t.Fatalf("migrate %s: %v", u, err)
	}
	return pool
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Server is a postgres server owned by one test, on a free loopback port.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	uid  *syscall.Credential
}

// Start runs initdb and a postgres server under a temp dir, as the
// postgres user when the test runs as root (postgres refuses root); it is
// stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	skipShort(t)
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		t.Fatalf("this test runs its own PostgreSQL and needs initdb and pg_ctl on PATH: %v", err)
	}
	s := &Server{t: t, Port: freeport.Get(t), dir: t.TempDir()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, this test needs the postgres user to run postgres: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.uid = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		os.Chmod(s.dir, 0o777)
		// The temp dir's parents must be passable by postgres.
		for d := filepath.Dir(s.dir); d != "/" && d != "."; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				os.Chmod(d, fi.Mode().Perm()|0o001)
			}
		}
	}
	s.run(initdb, "-D", s.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// URL reaches the server's postgres database.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
}

// Restart starts the server (again), keeping its data.
func (s *Server) Restart() {
	s.t.Helper()
	pgctl, _ := exec.LookPath("pg_ctl")
	s.run(pgctl, "-D", s.data(), "-w", "-t", "30", "-l", filepath.Join(s.dir, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.Port, s.dir), "start")
}

// Stop stops the server at once (immediate shutdown, as a crash would).
func (s *Server) Stop() {
	pgctl, _ := exec.LookPath("pg_ctl")
	cmd := exec.Command(pgctl, "-D", s.data(), "-m", "immediate", "-w", "stop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.uid}
	cmd.Run()
}

func (s *Server) run(bin string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(bin, args...)
	if s.uid != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.uid}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.t.Fatalf("%s %s: %v\n%s\n%s", filepath.Base(bin), strings.Join(args, " "), err, out, log)
	}
}

// Migrated connects to the server and migrates its database.
func (s *Server) Migrated(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := open(t, s.URL())
	t.Cleanup(pool.Close)
	return pool
}

// Proxy forwards loopback connections to a PostgreSQL server, and can cut
// them: a network partition between one client and the database.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port); it is closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// skipShort skips a test that needs a real PostgreSQL under go test -short (make
// test-short): the fast layer of tests runs without any store.
func skipShort(t testing.TB) {
	if testing.Short() {
		t.Skip("needs a real PostgreSQL: skipped under -short")
	}
}
