package gateway_test

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
)

type requestPage struct {
	Data       []usage.RequestEntry `json:"data"`
	HasMore    bool                 `json:"has_more"`
	NextCursor *string              `json:"next_cursor"`
}

// TestRequestLog: every request that named a model is in the log, on
// both stores — answered ones with their tokens and cost (the ledger's),
// refused ones and those a backend failed with their status and code —
// newest first, filtered by key, model, status class and error code,
// paged by a cursor new requests do not move, as CSV; and a key reads
// its own alone.
func TestRequestLog(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withPrices(money.Prices{hermesPrice})}
			if store == "postgres" {
				opts = append(opts, withAdmin(t), withLedger(postgresLedger(t)))
			} else {
				opts = append(opts, withEmbeddedAdmin(t))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 3}, opts...)
			chat := `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
			e.do(t, "POST", "/v1/chat", keyAll, chat)
			e.do(t, "POST", "/v1/chat/completions", keyAll, strings.Replace(chat, `"max_tokens":5`, `"max_tokens":5,"stream":true`, 1))
			e.do(t, "POST", "/v1/chat", keyHermes, strings.Replace(chat, "hermes", "charon", 1)) // 403: not its model
			e.sim.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
			e.do(t, "POST", "/v1/chat", keyHermes, chat) // 502
			e.sim.SetConfig(sim.Config{ReplyTokens: 3})
			var page requestPage
			var last []byte
			poll.Until(t, "four requests in the log", func() bool {
				_, body := e.do(t, "GET", "/v1/admin/requests", adminToken, "")
				last = body
				json.Unmarshal(body, &page)
				return len(page.Data) == 4
			})
			_ = last
			d := page.Data
			if d[0].Status != 502 || d[0].ErrorCode != "upstream_error" || d[0].Key != "key_hermes" || d[0].Backend != "sim" ||
				d[1].Status != 403 || d[1].ErrorCode != "forbidden" || d[1].Model != "charon" ||
				!d[2].Stream || d[2].Outcome != "completed" || d[2].API != "chat/completions" ||
				d[3].API != "chat" || d[3].Completion != 3 || d[3].DurationMs <= 0 || !d[0].Time.After(d[3].Time) {
				t.Errorf("the log: %+v", d)
			}
			h := e.usageOf(t, keyAll, "").ByModel["hermes"]
			if d[2].Cost+d[3].Cost != h.Cost || h.Cost == 0 || d[0].Cost != 0 || d[1].Cost != 0 {
				t.Errorf("the log's costs %s + %s, the ledger's %s", d[2].Cost.USD(), d[3].Cost.USD(), h.Cost.USD())
			}
			for q, want := range map[string]int{"?key=key_all": 2, "?status=5xx": 1, "?status=4xx&error_code=forbidden": 1, "?model=charon": 1, "?min_cost=0.000000000001": 2, "?request_id=" + d[2].RequestID: 1} {
				_, body := e.do(t, "GET", "/v1/admin/requests"+q, adminToken, "")
				var p requestPage
				if json.Unmarshal(body, &p); len(p.Data) != want {
					t.Errorf("%s: %d entries, want %d: %s", q, len(p.Data), want, body)
				}
			}
			// Pages of two: a request made between them does not move the cursor.
			_, body := e.do(t, "GET", "/v1/admin/requests?limit=2", adminToken, "")
			var first, second requestPage
			json.Unmarshal(body, &first)
			e.do(t, "POST", "/v1/chat", keyAll, chat)
			_, body = e.do(t, "GET", "/v1/admin/requests?limit=2&cursor="+*first.NextCursor, adminToken, "")
			json.Unmarshal(body, &second)
			if !first.HasMore || len(second.Data) != 2 || second.Data[0].RequestID != d[2].RequestID || second.Data[1].RequestID != d[3].RequestID || second.HasMore {
				t.Errorf("the second page: %s", body)
			}
			resp, body := e.do(t, "GET", "/v1/admin/requests?format=csv&limit=1", adminToken, "")
			rows, _ := csv.NewReader(strings.NewReader(string(body))).ReadAll()
			if resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || len(rows) != 2 || rows[0][1] != "request_id" || resp.Header.Get("X-Next-Cursor") == "" {
				t.Errorf("CSV: %q", rows)
			}
			// A key reads its own: key_hermes's two.
			_, body = e.do(t, "GET", "/v1/requests", keyHermes, "")
			var own requestPage
			json.Unmarshal(body, &own)
			if len(own.Data) != 2 || own.Data[0].Key != "key_hermes" || own.Data[1].Key != "key_hermes" {
				t.Errorf("a key's own log: %s", body)
			}
			if resp, _ := e.do(t, "GET", "/v1/requests?key=key_all", keyHermes, ""); resp.StatusCode != 400 {
				t.Errorf("a key asking for another's: %d", resp.StatusCode)
			}
			if resp, _ := e.do(t, "GET", "/v1/admin/requests?cursor=nope", adminToken, ""); resp.StatusCode != 400 {
				t.Errorf("a bad cursor: %d", resp.StatusCode)
			}
		})
	}
}

// TestRequestStats: per model and per backend, the requests, the error
// rate and the time to first token (streams) and duration percentiles
// from the request log, on both stores.
func TestRequestStats(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withEmbeddedAdmin(t)}
			if store == "postgres" {
				opts = []envOption{withAdmin(t), withLedger(postgresLedger(t))}
			}
			e := newEnv(t, sim.Config{ReplyTokens: 3}, opts...)
			chat := `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
			for range 3 {
				e.do(t, "POST", "/v1/chat", keyAll, chat)
			}
			e.do(t, "POST", "/v1/chat/stream", keyAll, chat)
			e.sim.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
			e.do(t, "POST", "/v1/chat", keyAll, chat)
			var stats struct {
				Data []usage.RequestStats `json:"data"`
			}
			poll.Until(t, "five requests summed", func() bool {
				_, body := e.do(t, "GET", "/v1/admin/requests/stats?by=backend", adminToken, "")
				json.Unmarshal(body, &stats)
				return len(stats.Data) == 1 && stats.Data[0].Requests == 5
			})
			s := stats.Data[0]
			if s.Model != "hermes" || s.Backend != "sim" || s.Errors != 1 || s.ErrorRate != 0.2 || s.TTFTP50 <= 0 || s.DurP50 <= 0 || s.DurP95 < s.DurP50 {
				t.Errorf("stats %+v", s)
			}
			if resp, _ := e.do(t, "GET", "/v1/admin/requests/stats?by=nope", adminToken, ""); resp.StatusCode != 400 {
				t.Errorf("by=nope: %d", resp.StatusCode)
			}
		})
	}
}

// TestAdminUsageRange: /v1/admin/usage over a start and end equals the
// month's figures when the range holds the month's usage, by day on both
// stores and by hour on PostgreSQL (the embedded store refuses hours by
// name).
func TestAdminUsageRange(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withEmbeddedAdmin(t), withPrices(money.Prices{hermesPrice})}
			if store == "postgres" {
				opts = []envOption{withAdmin(t), withLedger(postgresLedger(t)), withPrices(money.Prices{hermesPrice})}
			}
			e := newEnv(t, sim.Config{ReplyTokens: 3}, opts...)
			for range 3 {
				e.do(t, "POST", "/v1/chat", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`)
			}
			e.waitRecorded(t, keyAll, 3)
			type report struct {
				TotalCost money.Money `json:"total_cost"`
				Days      []struct {
					Date string `json:"date"`
				} `json:"days"`
			}
			var month, rng report
			_, body := e.do(t, "GET", "/v1/admin/usage", adminToken, "")
			json.Unmarshal(body, &month)
			now := time.Now().UTC()
			q := "/v1/admin/usage?start=" + now.Add(-time.Hour).Format(time.RFC3339) + "&end=" + now.Add(time.Hour).Format(time.RFC3339)
			resp, body := e.do(t, "GET", q+"&by=day", adminToken, "")
			json.Unmarshal(body, &rng)
			if resp.StatusCode != 200 || rng.TotalCost != month.TotalCost || month.TotalCost == 0 || len(rng.Days) == 0 {
				t.Errorf("by day: %d %s, the month's %s", resp.StatusCode, body, month.TotalCost.USD())
			}
			resp, body = e.do(t, "GET", q+"&by=hour", adminToken, "")
			switch store {
			case "postgres":
				rng = report{}
				json.Unmarshal(body, &rng)
				if resp.StatusCode != 200 || rng.TotalCost != month.TotalCost || len(rng.Days) == 0 || !strings.Contains(rng.Days[0].Date, "T") {
					t.Errorf("by hour: %d %s", resp.StatusCode, body)
				}
			default:
				if resp.StatusCode != 400 || !strings.Contains(string(body), "finer than this ledger keeps") {
					t.Errorf("by hour, embedded: %d %s", resp.StatusCode, body)
				}
			}
		})
	}
}
