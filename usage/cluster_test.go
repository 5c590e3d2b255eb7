package usage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/redistest"
)

// TestCluster: on a three-master Redis Cluster a batch spanning months
// (so hash slots) is written in one pipeline, each month's keys read in
// one go, and scripts flushed from every master are loaded again.
func TestCluster(t *testing.T) {
	rdb, addrs := redistest.ClusterClient(t, 3)
	ctx := context.Background()
	r := NewRedis(rdb, "obol:")
	months := []time.Time{nov, nov.AddDate(0, 1, 0), nov.AddDate(0, 2, 0), nov.AddDate(0, 3, 0)}
	var recs []Record
	for i := 0; i < 80; i++ {
		recs = append(recs, Record{RequestID: fmt.Sprintf("chat_%d", i), Key: fmt.Sprintf("key_%d", i%5), Model: "hermes",
			Time: months[i%4], PromptTokens: 3, CompletionTokens: 2})
	}
	if err := r.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// After SCRIPT FLUSH on every master, the write loads the script
	// again, and the batch's second coming adds nothing.
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		c.ScriptFlush(ctx)
		c.Close()
	}
	if err := r.Write(ctx, recs); err != nil {
		t.Fatalf("write after SCRIPT FLUSH: %v", err)
	}
	for _, m := range months {
		all, err := r.All(ctx, m.Format("2006-01"))
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 {
			t.Errorf("%s: %d keys, want 5", m.Format("2006-01"), len(all))
		}
		for k, s := range all {
			if row := s.ByModel["hermes"]; row.Requests != 4 || row.Prompt != 12 || row.Completion != 8 {
				t.Errorf("%s %s: %+v", m.Format("2006-01"), k, row)
			}
		}
	}
	if used := redistest.MastersUsed(t, addrs); used < 2 {
		t.Errorf("months on %d masters; the test did not exercise the cluster", used)
	}
}
