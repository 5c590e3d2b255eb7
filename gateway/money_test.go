package gateway_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
)

// hermesPrice: $0.50, $0.05 cached, $1.50 per million tokens.
var hermesPrice = money.Price{Input: 500_000, CachedInput: 50_000, Output: 1_500_000}

func withPrices(ps money.Prices) envOption {
	return func(c *envConfig) { c.Prices = map[string]money.Prices{"hermes": ps} }
}

// usd parses a JSON number of dollars exactly, as picodollars.
func usd(t *testing.T, s string) money.Money {
	t.Helper()
	m, err := money.ParseUSD(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCostInEveryAnswer: the native answer and the native stream carry
// usage.cost, an OpenAI-shaped answer the x-obol-cost header, and each is
// the price table applied to the backend's counts (cached tokens at the
// cached price); /v1/usage sums the same figures, by model and by day.
func TestCostInEveryAnswer(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 7, CachedTokens: 3}, withPrices(money.Prices{hermesPrice}))
	var want money.Money
	expect := func(u map[string]any) money.Money {
		prompt := int64(u["prompt_tokens"].(float64))
		completion := int64(u["completion_tokens"].(float64))
		c := hermesPrice.Cost(money.Tokens{Prompt: prompt, Cached: 3, Completion: completion})
		want += c
		return c
	}
	resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
	var ans struct{ Usage map[string]json.RawMessage }
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &ans)
	var u map[string]any
	json.Unmarshal(raw[strings.Index(string(raw), `"usage":`)+8:len(raw)-1], &u)
	if got := usd(t, string(ans.Usage["cost"])); got != expect(u) {
		t.Errorf("native answer cost %s, want %s", ans.Usage["cost"], expect(u).USD())
	}
	resp = e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	events, _ := readEvents(t, resp.Body)
	last := events[len(events)-2].m["usage"].(map[string]any)
	lastRaw := events[len(events)-2].raw
	costText := lastRaw[strings.Index(lastRaw, `"cost":`)+7:]
	costText = costText[:strings.IndexAny(costText, ",}")]
	if got := usd(t, costText); got != expect(last) {
		t.Errorf("native stream cost %s, want %s", costText, expect(last).USD())
	}
	resp = e.post(t, "/v1/chat/completions", keyAll, hi+`}`)
	raw, _ = io.ReadAll(resp.Body)
	var comp struct{ Usage map[string]any }
	json.Unmarshal(raw, &comp)
	if _, has := comp.Usage["cost"]; has {
		t.Error("an OpenAI-shaped answer's usage gained a cost field")
	}
	if got := usd(t, resp.Header.Get("X-Obol-Cost")); got != expect(comp.Usage) {
		t.Errorf("x-obol-cost %s, want %s", resp.Header.Get("X-Obol-Cost"), expect(comp.Usage).USD())
	}
	e.waitRecorded(t, keyAll, 3)
	r := e.get(t, "/v1/usage?by=day", keyAll)
	raw, _ = io.ReadAll(r.Body)
	var s struct {
		TotalCost json.Number `json:"total_cost"`
		Currency  string      `json:"currency"`
		ByModel   map[string]struct {
			Cost json.Number `json:"cost"`
		} `json:"by_model"`
		Days []struct {
			Date      string      `json:"date"`
			TotalCost json.Number `json:"total_cost"`
		} `json:"days"`
	}
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	d.Decode(&s)
	today := time.Now().UTC().Format("2006-01-02")
	if usd(t, s.TotalCost.String()) != want || usd(t, s.ByModel["hermes"].Cost.String()) != want || s.Currency != "usd" ||
		len(s.Days) != 1 || s.Days[0].Date != today || usd(t, s.Days[0].TotalCost.String()) != want {
		t.Errorf("usage %s, want total %s", raw, want.USD())
	}
}

// TestPriceInEffectAtArrival: a dated price applies to requests that
// arrive from its instant on; a model without a price costs 0 and says
// so in /v1/models.
func TestPriceInEffectAtArrival(t *testing.T) {
	past := money.Price{From: time.Now().Add(-time.Hour), Input: 2 * hermesPrice.Input, CachedInput: hermesPrice.CachedInput, Output: hermesPrice.Output}
	future := money.Price{From: time.Now().Add(time.Hour), Input: 9_000_000, Output: 9_000_000}
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withPrices(money.Prices{hermesPrice, past, future}))
	resp := e.post(t, "/v1/chat/completions", keyAll, hi+`}`)
	var comp struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &comp)
	want := past.Cost(money.Tokens{Prompt: comp.Usage.PromptTokens, Completion: comp.Usage.CompletionTokens})
	if got := usd(t, resp.Header.Get("X-Obol-Cost")); got != want {
		t.Errorf("cost %s, want the price in effect now: %s", resp.Header.Get("X-Obol-Cost"), want.USD())
	}
	r := e.get(t, "/v1/models/hermes", keyAll)
	raw, _ = io.ReadAll(r.Body)
	if !strings.Contains(string(raw), `"pricing":{"input":1,"cached_input":0.05,"cache_write":0,"cache_write_1h":0,"output":1.5,"currency":"usd","next":{"from":"`) {
		t.Errorf("hermes pricing: %s", raw)
	}
	r = e.get(t, "/v1/models/charon", keyAll)
	raw, _ = io.ReadAll(r.Body)
	if !strings.Contains(string(raw), `"pricing":null`) {
		t.Errorf("charon pricing: %s", raw)
	}
}
