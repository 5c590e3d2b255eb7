package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/obol/obol/quota"
)

// leases keeps the leases of the requests in flight alive: one goroutine
// renews them all every third of their life, in one batch (one pipelined
// round trip to Redis), instead of a goroutine and a timer per request.
// A stream that outlives quota.LeaseTTL keeps its slot and its held
// money; a replica that dies loses both within quota.LeaseTTL.
type leases struct {
	q     Quota
	log   *slog.Logger
	every time.Duration
	// watch, when the store can say so, is how often it is asked whether
	// it lost the leases (a flushed Redis), which are then renewed at once.
	watch time.Duration
	mu    sync.Mutex
	held  map[*quota.Reservation]struct{}
	// running: the renewer goroutine is up; it stops when none is held.
	running bool
}

func newLeases(q Quota, log *slog.Logger) *leases {
	return &leases{q: q, log: log, every: quota.LeaseTTL / 3, watch: time.Second, held: map[*quota.Reservation]struct{}{}}
}

// leaseWatcher is a store that can tell, in one cheap call, that it lost
// the leases it was given.
type leaseWatcher interface {
	LeasesLost(ctx context.Context) bool
}

// hold renews res's lease until release.
func (l *leases) hold(res *quota.Reservation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held[res] = struct{}{}
	if !l.running {
		l.running = true
		go l.renew()
	}
}

func (l *leases) release(res *quota.Reservation) {
	l.mu.Lock()
	delete(l.held, res)
	l.mu.Unlock()
}

// renew renews every held lease every l.every, and at once when the
// store says it lost them (asked every l.watch); it ends when none is
// held.
func (l *leases) renew() {
	watcher, watching := l.q.(leaseWatcher)
	tick := l.every
	if watching {
		tick = min(l.watch, l.every)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var batch []*quota.Reservation
	last := time.Now()
	for range t.C {
		l.mu.Lock()
		if len(l.held) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		if time.Since(last) < l.every-tick/2 && !(watching && watcher.LeasesLost(context.Background())) {
			continue
		}
		last = time.Now()
		l.mu.Lock()
		batch = batch[:0]
		for res := range l.held {
			batch = append(batch, res)
		}
		l.mu.Unlock()
		if err := l.q.Renew(context.Background(), batch...); err != nil {
			l.log.Warn("leases not renewed; they expire unless renewed next time", "leases", len(batch), "err", err)
		}
	}
}
