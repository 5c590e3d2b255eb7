package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
)

// A ledger in the embedded store: records are queued, written in
// batches, and read back as /v1/usage serves them. A request id written
// twice counts once.
func ExampleLedger() {
	dir, _ := os.MkdirTemp("", "obol-example")
	defer os.RemoveAll(dir)
	db, _ := bolt.Open(filepath.Join(dir, "obol.db"), 0o600, nil)
	defer db.Close()
	store, _ := usage.OpenEmbedded(db)
	l := usage.NewLedger(store, usage.Options{SpoolDir: filepath.Join(dir, "spool")})

	at := time.Date(2026, 4, 2, 9, 30, 0, 0, time.UTC)
	price := money.Prices{{Input: 500_000, Output: 1_500_000}} // $0.50 and $1.50 per million tokens, in picodollars per token
	cost := func(prompt, completion int64) money.Money {
		return price.At(at).Cost(money.Tokens{Prompt: prompt, Completion: completion})
	}
	l.Record(usage.Record{RequestID: "chat_1", Key: "key_a", Model: "hermes", Time: at, PromptTokens: 28, CompletionTokens: 12, Cost: cost(28, 12)})
	l.Record(usage.Record{RequestID: "chat_2", Key: "key_a", Model: "hermes", Time: at, PromptTokens: 40, CompletionTokens: 9, Cost: cost(40, 9)})
	<-l.Record(usage.Record{RequestID: "chat_2", Key: "key_a", Model: "hermes", Time: at, PromptTokens: 40, CompletionTokens: 9, Cost: cost(40, 9)})
	l.Close(context.Background())

	s, _ := l.Summary(context.Background(), "key_a", "2026-04")
	s.Days = nil // served with ?by=day
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	// Output: {"period":"2026-04","total_tokens":89,"total_cost":0.0000655,"currency":"usd","by_model":{"hermes":{"prompt":68,"cached_prompt":0,"completion":21,"reasoning":0,"requests":2,"cost":0.0000655}}}
}
