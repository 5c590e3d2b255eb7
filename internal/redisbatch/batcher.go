// Package redisbatch shares Redis round trips among writers that each
// batch their own commands: the settlements many requests leave behind
// go in one pipeline, not one each (and another writer may join them).
package redisbatch

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batcher runs the pipelines of several writers as one. A writer's call
// waits, up to the linger, for the others to join, then for the shared
// round trip; it gets back its own commands and their first error.
//
// Without a linger (NewEager) a writer's pipeline leaves at once unless
// as many as the batcher allows are already in flight; writers that come
// meanwhile go together in the next one. Alone, a writer waits no longer
// than its own round trip; under load, one round trip carries many.
type Batcher struct {
	rdb      redis.UniversalClient
	linger   time.Duration
	timeout  time.Duration
	inFlight int // eager only: pipelines allowed at once

	mu      sync.Mutex
	jobs    []*job
	running int
}

type job struct {
	fn         func(redis.Pipeliner) error
	start, end int // the job's commands in the shared pipeline
	cmds       []redis.Cmder
	err        error
	done       chan struct{}
}

// New returns a Batcher over rdb that waits linger for writers to join a
// pipeline, which then has timeout to run. No linger is NewEager's with
// one pipeline in flight.
func New(rdb redis.UniversalClient, linger, timeout time.Duration) *Batcher {
	if linger <= 0 {
		return NewEager(rdb, 1, timeout)
	}
	return &Batcher{rdb: rdb, linger: linger, timeout: timeout}
}

// NewEager returns a Batcher over rdb that sends a writer's pipeline at
// once, with at most inFlight pipelines in flight; each has timeout to
// run.
func NewEager(rdb redis.UniversalClient, inFlight int, timeout time.Duration) *Batcher {
	return &Batcher{rdb: rdb, timeout: timeout, inFlight: max(inFlight, 1)}
}

// Pipelined has the signature of go-redis's: fn queues commands, which
// run in the next shared pipeline. It returns fn's commands and the first
// of their errors. If ctx ends before the commands are sent, they are
// withdrawn and never run, and ctx's error is returned with no commands;
// once sent, their answer is waited for (within the batcher's timeout),
// so that a caller always knows whether what it asked for ran: an
// admission that reserved must be settled.
func (b *Batcher) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	j := &job{fn: fn, done: make(chan struct{})}
	b.mu.Lock()
	b.jobs = append(b.jobs, j)
	lead := false
	switch {
	case b.linger > 0:
		if len(b.jobs) == 1 {
			time.AfterFunc(b.linger, b.run)
		}
	case b.running < b.inFlight:
		b.running++
		lead = true
	}
	b.mu.Unlock()
	if lead {
		b.lead()
	}
	select {
	case <-j.done:
		return j.cmds, j.err
	case <-ctx.Done():
	}
	if b.withdraw(j) {
		return nil, ctx.Err()
	}
	<-j.done // sent: its pipeline's timeout bounds the wait
	return j.cmds, j.err
}

// withdraw takes j out of the queue; false if a pipeline took it.
func (b *Batcher) withdraw(j *job) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, q := range b.jobs {
		if q == j {
			b.jobs = append(b.jobs[:i], b.jobs[i+1:]...)
			return true
		}
	}
	return false
}

// lead runs pipelines, the first in the caller's goroutine (so a writer
// alone pays no hand-over), the next ones, while writers are waiting, in
// another, so that the caller goes on with its own answer.
func (b *Batcher) lead() {
	b.run()
	b.mu.Lock()
	if len(b.jobs) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.lead()
}

func (b *Batcher) run() {
	b.mu.Lock()
	jobs := b.jobs
	b.jobs = nil
	b.mu.Unlock()
	if len(jobs) == 0 {
		return // another pipeline took them
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	cmds, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, j := range jobs {
			j.start = p.Len()
			j.err = j.fn(p)
			j.end = p.Len()
		}
		return nil
	})
	for _, j := range jobs {
		if j.end <= len(cmds) {
			j.cmds = cmds[j.start:j.end]
		}
		for _, c := range j.cmds {
			if j.err != nil {
				break
			}
			j.err = c.Err()
		}
		if j.err == nil && len(j.cmds) == 0 && j.end > j.start {
			j.err = err // the pipeline failed before any command
		}
		close(j.done)
	}
}
