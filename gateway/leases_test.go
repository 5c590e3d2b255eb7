package gateway

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/quota"
)

// renewCounter counts the leases Renew is asked to renew, over a real
// in-process store.
type renewCounter struct {
	*quota.Memory
	mu      sync.Mutex
	renewed map[*quota.Reservation]int
}

func (r *renewCounter) Renew(ctx context.Context, res ...*quota.Reservation) error {
	r.mu.Lock()
	for _, rs := range res {
		r.renewed[rs]++
	}
	r.mu.Unlock()
	return r.Memory.Renew(ctx, res...)
}

func (r *renewCounter) count(res *quota.Reservation) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renewed[res]
}

// TestLeasesRenewedTogether: one goroutine renews every held lease in
// one batch each tick, stops renewing one once it is released, and ends
// when none is held.
func TestLeasesRenewedTogether(t *testing.T) {
	q := &renewCounter{Memory: quota.NewMemory(), renewed: map[*quota.Reservation]int{}}
	l := newLeases(q, slog.New(slog.DiscardHandler))
	l.every = 5 * time.Millisecond
	sub := quota.One("key_a", quota.Limits{Concurrency: 10})
	var held []*quota.Reservation
	for i := 0; i < 3; i++ {
		d, _ := q.Admit(context.Background(), sub, 1, 0)
		held = append(held, d.Reservation)
		l.hold(d.Reservation)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.count(held[0]) < 2 || q.count(held[2]) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the leases were not renewed")
		}
		time.Sleep(time.Millisecond)
	}
	l.release(held[0])
	after := q.count(held[0])
	for q.count(held[1]) < after+3 {
		time.Sleep(time.Millisecond)
	}
	if got := q.count(held[0]); got > after+1 { // one batch may have been taken before the release
		t.Errorf("a released lease was renewed %d more times", got-after)
	}
	l.release(held[1])
	l.release(held[2])
	for {
		l.mu.Lock()
		running := l.running
		l.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewer did not end")
		}
		time.Sleep(time.Millisecond)
	}
}
