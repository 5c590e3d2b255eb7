package gateway_test

import (
	"path/filepath"
	"testing"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// anthropicDir holds Anthropic's npm clients the tests drive the gateway
// with (make test installs them from the lock file).
var anthropicDir = filepath.Join("testdata", "anthropic-node")

// ledgerTotal is a key's month over every model.
func ledgerTotal(s usage.Summary) usage.Row {
	var r usage.Row
	for _, row := range s.ByModel {
		r.AddRow(row)
	}
	return r
}

// TestAnthropicSDK runs the official @anthropic-ai/sdk against the
// gateway: messages.create, messages.stream with finalMessage, tool round
// trips, countTokens, models, images, errors as the SDK's classes, an
// error mid-stream, 429 with Anthropic's headers, and a 529 the SDK
// retries after its retry-after. Every answer's usage is in the ledger
// as the backend reported it, at its price.
func TestAnthropicSDK(t *testing.T) {
	for _, backend := range []string{"openai", "anthropic"} {
		t.Run(backend+" backend", func(t *testing.T) {
			dialect := func(*envConfig) {}
			if backend == "anthropic" {
				dialect = withAnthropicBackend
			}
			e := newEnv(t, sim.Config{ReplyTokens: 8}, withPrices(money.Prices{hermesPrice}), dialect)
			faulty := newEnv(t, sim.Config{ReplyTokens: 8, Fault: sim.Fault{Kind: sim.StreamError, After: 2}}, dialect)
			limited := newEnv(t, sim.Config{ReplyTokens: 8}, withQuota(redisLimiter(t)), withLimits(keyAll, quota.Limits{RPM: 2}), dialect)
			retry := newEnv(t, sim.Config{ReplyTokens: 8, Fault: sim.Fault{Kind: sim.Status, Status: 429, Times: 1}}, dialect)
			runNodeIn(t, anthropicDir, "sdk.mjs", "@anthropic-ai/sdk",
				"OBOL_BASE_URL="+e.gw.URL, "OBOL_KEY_ALL="+keyAll, "OBOL_KEY_HERMES="+keyHermes, "OBOL_WANT_TEXT="+sim.Reply(8),
				"OBOL_FAULT_BASE_URL="+faulty.gw.URL, "OBOL_LIMITED_BASE_URL="+limited.gw.URL, "OBOL_RETRY_BASE_URL="+retry.gw.URL)
			st := e.sim.Stats()
			var got usage.Row
			poll.Until(t, "the ledger to hold what the backend reported", func() bool {
				got = ledgerTotal(e.usageOf(t, keyAll, ""))
				return got.Prompt == st.ReportedPrompt && got.Completion == st.ReportedTokens
			})
			hermes := e.usageOf(t, keyAll, "").ByModel["hermes"]
			if want := hermesPrice.Cost(money.Tokens{Prompt: hermes.Prompt, Completion: hermes.Completion}); hermes.Cost != want {
				t.Errorf("hermes cost %s, want %s at its price", hermes.Cost.USD(), want.USD())
			}
		})
	}
}

// TestLangChainAnthropic runs @langchain/anthropic's ChatAnthropic:
// invoke, stream with usage, and a bound tool's call and result.
func TestLangChainAnthropic(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 8})
	runNodeIn(t, anthropicDir, "langchain.mjs", "@langchain/anthropic",
		"OBOL_BASE_URL="+e.gw.URL, "OBOL_KEY_ALL="+keyAll, "OBOL_WANT_TEXT="+sim.Reply(8))
	st := e.sim.Stats()
	poll.Until(t, "the ledger to hold what the backend reported", func() bool {
		got := ledgerTotal(e.usageOf(t, keyAll, ""))
		return got.Prompt == st.ReportedPrompt && got.Completion == st.ReportedTokens && got.Requests == 4
	})
}
