package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
)

// pipelineCounter counts the pipelines a client sends.
type pipelineCounter struct{ n atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (c *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestWritersShareOneRoundTrip: two writers' commands go in one pipeline,
// and each gets back its own commands and its own error.
func TestWritersShareOneRoundTrip(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	ctx := context.Background()
	var count pipelineCounter
	rdb.AddHook(&count)
	// Connections set up (each in a pipeline of its own) before counting.
	rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil })
	count.n.Store(0)
	b := New(rdb, time.Hour, 2*time.Second) // run by hand below

	type answer struct {
		cmds []redis.Cmder
		err  error
	}
	good, bad := make(chan answer, 1), make(chan answer, 1)
	go func() {
		cmds, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, prefix+"a", "1", time.Minute)
			p.Incr(ctx, prefix+"n")
			return nil
		})
		good <- answer{cmds, err}
	}()
	go func() {
		cmds, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.EvalSha(ctx, "0000000000000000000000000000000000000000", nil)
			return nil
		})
		bad <- answer{cmds, err}
	}()
	poll.Until(t, "both writers queued", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.jobs) == 2
	})
	b.run()

	g, e := <-good, <-bad
	if g.err != nil || len(g.cmds) != 2 || g.cmds[1].(*redis.IntCmd).Val() != 1 {
		t.Errorf("the good writer: %v %v", g.cmds, g.err)
	}
	if e.err == nil || !redis.HasErrorPrefix(e.err, "NOSCRIPT") || len(e.cmds) != 1 {
		t.Errorf("the failing writer: %v %v, want its NOSCRIPT alone", e.cmds, e.err)
	}
	if n := count.n.Load(); n != 1 {
		t.Errorf("%d pipelines, want 1", n)
	}
	if v, _ := rdb.Get(ctx, prefix+"a").Result(); v != "1" {
		t.Errorf("a = %q", v)
	}
}

// TestCallerContext: a writer whose context ends before its commands are
// sent withdraws them (they never run); one whose commands were sent gets
// their answer, whatever its context; a Redis that does not answer fails
// every writer with the batcher's timeout.
func TestCallerContext(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	ctx := context.Background()
	b := New(rdb, time.Hour, time.Second) // run by hand below
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if cmds, err := b.Pipelined(cctx, func(p redis.Pipeliner) error {
		p.Set(ctx, prefix+"x", "1", time.Minute)
		return nil
	}); err != context.Canceled || cmds != nil {
		t.Errorf("cancelled writer: %v %v, want no commands and context.Canceled", cmds, err)
	}
	b.run()
	if n, _ := rdb.Exists(ctx, prefix+"x").Result(); n != 0 {
		t.Error("a withdrawn writer's command ran")
	}

	// Sent, then cancelled: the answer still comes back. The first
	// writer leads; the second's pipeline is the next one, held at the
	// gate when its context ends.
	g := gate{open: make(chan struct{})}
	opt := *rdb.Options()
	opt.DisableIdentity = true // no pipeline of its own to set up a connection
	slow := redis.NewClient(&opt)
	defer slow.Close()
	slow.AddHook(&g)
	b = NewEager(slow, 1, 5*time.Second)
	go b.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil })
	poll.Until(t, "the first pipeline sent", func() bool { return g.n.Load() == 1 })
	cctx, cancel = context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		cmds, err := b.Pipelined(cctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, prefix+"sent")
			return nil
		})
		if err == nil && (len(cmds) != 1 || cmds[0].(*redis.IntCmd).Val() != 1) {
			err = fmt.Errorf("answer %v", cmds)
		}
		got <- err
	}()
	poll.Until(t, "the second writer queued", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.jobs) == 1
	})
	g.open <- struct{}{}
	poll.Until(t, "the second pipeline sent", func() bool { return g.n.Load() == 2 })
	cancel()
	g.open <- struct{}{}
	if err := <-got; err != nil {
		t.Errorf("a writer cancelled after its commands were sent: %v, want their answer", err)
	}

	// A listener that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	mute := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, Protocol: 2, DisableIdentity: true,
		ContextTimeoutEnabled: true})
	defer mute.Close()
	b = New(mute, time.Millisecond, 200*time.Millisecond)
	_, err = b.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		p.Incr(context.Background(), "n")
		return nil
	})
	if err == nil {
		t.Error("a Redis that never answers: no error")
	}
}

// gate holds every pipeline until it is opened, counting them.
type gate struct {
	pipelineCounter
	open chan struct{}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g.n.Add(1)
		<-g.open
		return next(ctx, cmds)
	}
}

// TestEagerSendsAtOnceAndGathersTheRest: a writer alone is sent at once,
// with no linger; writers that come while the allowed pipelines are in
// flight go together in one more.
func TestEagerSendsAtOnceAndGathersTheRest(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	ctx := context.Background()
	rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil })
	g := &gate{open: make(chan struct{})}
	rdb.AddHook(g)
	b := NewEager(rdb, 1, 5*time.Second)

	incr := func(done chan<- error) {
		cmds, err := b.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, prefix+"n")
			return nil
		})
		if err == nil && len(cmds) != 1 {
			err = errors.New("not its one command back")
		}
		done <- err
	}
	done := make(chan error, 6)
	go incr(done)
	poll.Until(t, "the first writer's pipeline sent with no other writer", func() bool { return g.n.Load() == 1 })
	for range 5 {
		go incr(done)
	}
	poll.Until(t, "five writers waiting", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.jobs) == 5
	})
	close(g.open)
	for range 6 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := g.n.Load(); n != 2 {
		t.Errorf("%d pipelines for 1 writer then 5 together, want 2", n)
	}
	if v, _ := rdb.Get(ctx, prefix+"n").Int(); v != 6 {
		t.Errorf("n = %d, want 6", v)
	}
	poll.Until(t, "no pipeline counted as running", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.running == 0
	})
}

// TestNoLingerIsEager: a batcher made with no linger sends at once (it
// would otherwise wait for a timer never set).
func TestNoLingerIsEager(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmds, err := New(rdb, 0, time.Second).Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, prefix+"n")
		return nil
	})
	if err != nil || len(cmds) != 1 || cmds[0].(*redis.IntCmd).Val() != 1 {
		t.Fatalf("%v %v", cmds, err)
	}
}
