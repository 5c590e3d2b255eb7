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
	mu    sync.Mutex
	held  map[*quota.Reservation]struct{}
	// running: the renewer goroutine is up; it stops when none is held.
	running bool
}

func newLeases(q Quota, log *slog.Logger) *leases {
	return &leases{q: q, log: log, every: quota.LeaseTTL / 3, held: map[*quota.Reservation]struct{}{}}
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

// renew renews every held lease each tick, and ends when none is held.
func (l *leases) renew() {
	t := time.NewTicker(l.every)
	defer t.Stop()
	var batch []*quota.Reservation
	for range t.C {
		l.mu.Lock()
		if len(l.held) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
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
