package usage

import (
	"context"
	"testing"
	"time"
)

func TestCostAtDayAndMonthBoundary(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		end := time.Date(2026, 11, 30, 23, 59, 59, 999_000_000, time.UTC)
		record(t, l, Record{RequestID: "late", Key: "k", Model: "hermes", Time: end, PromptTokens: 10, Cost: 7})
		record(t, l, Record{RequestID: "early", Key: "k", Model: "hermes", Time: end.Add(time.Millisecond), PromptTokens: 20, Cost: 11})
		nov, _ := l.Summary(context.Background(), "k", "2026-11")
		dec, _ := l.Summary(context.Background(), "k", "2026-12")
		if nov.TotalCost != 7 || len(nov.Days) != 1 || nov.Days[0].Date != "2026-11-30" || nov.Days[0].TotalCost != 7 {
			t.Errorf("November: %+v", nov)
		}
		if dec.TotalCost != 11 || len(dec.Days) != 1 || dec.Days[0].Date != "2026-12-01" {
			t.Errorf("December: %+v", dec)
		}
	})
}
