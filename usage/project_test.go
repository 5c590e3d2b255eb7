package usage

import (
	"context"
	"testing"
)

// TestProjectInLedger: each record keeps its key's project; spend is
// summed by key or by project (a key that moved counts where it was),
// tokens of a day likewise, and buckets filter and group by project, in
// both stores.
func TestProjectInLedger(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		ctx := context.Background()
		recs := []Record{
			{RequestID: "r1", Key: "key_a", Project: "acme", Model: "hermes", Time: nov, PromptTokens: 10, Cost: 100},
			{RequestID: "r2", Key: "key_a", Project: "acme", Model: "hermes", Time: nov, PromptTokens: 10, Cost: 100, Kind: KindEmbeddings},
			{RequestID: "r3", Key: "key_b", Project: "acme", Model: "minos", Time: nov.AddDate(0, 0, 1), CompletionTokens: 5, Cost: 50},
			{RequestID: "r4", Key: "key_a", Model: "hermes", Time: nov, PromptTokens: 1, Cost: 7}, // after leaving the project
			{RequestID: "r5", Key: "key_c", Project: "beta", Model: "hermes", Time: nov, Cost: 1000},
			{RequestID: "r6", Key: "key_b", Project: "acme", Model: "minos", Time: nov.AddDate(0, 1, 0), Cost: 9}, // December
		}
		if err := l.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		led := NewLedger(l.(Store), Options{})
		defer led.Close(ctx)
		for _, tt := range []struct {
			key, project string
			want         int64
		}{{"key_a", "", 207}, {"", "acme", 250}, {"", "beta", 1000}, {"key_b", "", 50}, {"", "none", 0}} {
			if got, err := led.Spent(ctx, tt.key, tt.project, "202611"); err != nil || got != tt.want {
				t.Errorf("spent by %q/%q: %d, %v; want %d", tt.key, tt.project, got, err, tt.want)
			}
		}
		// Tokens of a day, prompt and completion, embeddings too.
		day := nov.Format("20060102")
		for _, tt := range []struct {
			key, project, day string
			want              int64
		}{{"key_a", "", day, 21}, {"", "acme", day, 20}, {"key_b", "", day, 0}, {"key_b", "", nov.AddDate(0, 0, 1).Format("20060102"), 5}} {
			if got, err := led.Used(ctx, tt.key, tt.project, tt.day); err != nil || got != tt.want {
				t.Errorf("used by %q/%q on %s: %d, %v; want %d", tt.key, tt.project, tt.day, got, err, tt.want)
			}
		}
		rows, err := led.Buckets(ctx, BucketQuery{Start: nov.AddDate(0, 0, -14), End: nov.AddDate(0, 0, 16), ByProject: true, Projects: []string{"acme", ""}})
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]Row{}
		for _, r := range rows {
			cur := by[r.Project+"/"+r.Kind]
			cur.AddRow(r.Row)
			by[r.Project+"/"+r.Kind] = cur
		}
		if by["acme/completions"].Cost != 150 || by["acme/embeddings"].Cost != 100 || by["/completions"].Cost != 7 || len(by) != 3 {
			t.Errorf("by project: %+v", by)
		}
		s, _ := l.Summary(ctx, "key_a", "2026-11")
		if s.TotalCost != 207 || s.ByModel["hermes"].Requests != 3 {
			t.Errorf("key_a's month over both projects: %+v", s)
		}
	})
}
