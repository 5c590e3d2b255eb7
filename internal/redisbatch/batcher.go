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
type Batcher struct {
	rdb     redis.UniversalClient
	linger  time.Duration
	timeout time.Duration

	mu   sync.Mutex
	jobs []*job
}

type job struct {
	fn         func(redis.Pipeliner) error
	start, end int // the job's commands in the shared pipeline
	cmds       []redis.Cmder
	err        error
	done       chan struct{}
}

// New returns a Batcher over rdb that waits linger for writers to join a
// pipeline, which then has timeout to run.
func New(rdb redis.UniversalClient, linger, timeout time.Duration) *Batcher {
	return &Batcher{rdb: rdb, linger: linger, timeout: timeout}
}

// Pipelined has the signature of go-redis's: fn queues commands, which
// run in the next shared pipeline. It returns fn's commands and the first
// of their errors. If ctx ends first it returns ctx's error, and the
// commands may still run: a writer's commands must bear that (a
// settlement may be lost either way).
func (b *Batcher) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	j := &job{fn: fn, done: make(chan struct{})}
	b.mu.Lock()
	b.jobs = append(b.jobs, j)
	if len(b.jobs) == 1 {
		time.AfterFunc(b.linger, b.run)
	}
	b.mu.Unlock()
	select {
	case <-j.done:
		return j.cmds, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Batcher) run() {
	b.mu.Lock()
	jobs := b.jobs
	b.jobs = nil
	b.mu.Unlock()
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
