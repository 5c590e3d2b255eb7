package usage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// recordTTL is how long a request id is remembered against a second
// write: far longer than a retry, or a restart that replays the spool,
// takes; short enough that the markers (about 100 bytes each in Redis)
// hold one day of requests, not a month's.
const recordTTL = 24 * time.Hour

// recordScript adds a record to its key's month once: the request id is
// claimed with SET NX, and only the claimant adds its tokens.
//
// KEYS: the request id marker, the key's month hash, the month's key set
// (all in the month's hash slot). ARGV: model, prompt, completion, key id,
// marker TTL in seconds.
var recordScript = redis.NewScript(`
if not redis.call("SET", KEYS[1], 1, "NX", "EX", ARGV[5]) then
  return 0
end
redis.call("HINCRBY", KEYS[2], ARGV[1] .. ":prompt", ARGV[2])
redis.call("HINCRBY", KEYS[2], ARGV[1] .. ":completion", ARGV[3])
redis.call("HINCRBY", KEYS[2], ARGV[1] .. ":requests", 1)
redis.call("SADD", KEYS[3], ARGV[4])
return 1
`)

// Redis is the ledger shared by every replica. A month's keys share one
// hash tag, {usage:YYYY-MM}, so that on a Cluster the record script and
// the read of every key's month (one pipeline) each reach one node.
type Redis struct {
	rdb    redis.UniversalClient
	pipe   Pipelines // rdb, or a batcher shared with other writers
	prefix string
}

// NewRedis returns a ledger in rdb; every key starts with prefix.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, pipe: rdb, prefix: prefix}
}

// Pipelines runs pipelines: the Redis client itself, or a batcher that
// sends other writers' commands in the same round trip.
type Pipelines interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// SetPipelines sends the batched writes through p.
func (r *Redis) SetPipelines(p Pipelines) { r.pipe = p }

func (r *Redis) month(period string) string { return r.prefix + "{usage:" + period + "}:" }

// Write adds recs in one pipelined round trip (one per node on a
// Cluster), each once by its request id. Scripts missing after a Redis
// restart are loaded and the whole batch is sent again, which the request
// ids make harmless.
func (r *Redis) Write(ctx context.Context, recs []Record) error {
	err := r.write(ctx, recs)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = recordScript.Load(ctx, r.rdb).Err(); err == nil {
			err = r.write(ctx, recs)
		}
	}
	if err != nil {
		return fmt.Errorf("write %d usage records: %w", len(recs), err)
	}
	return nil
}

func (r *Redis) write(ctx context.Context, recs []Record) error {
	ttl := int64(recordTTL / time.Second)
	_, err := r.pipe.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range recs {
			m := r.month(rec.Period())
			recordScript.EvalSha(ctx, p, []string{m + "req:" + rec.RequestID, m + "key:" + rec.Key, m + "keys"},
				rec.Model, rec.PromptTokens, rec.CompletionTokens, rec.Key, ttl)
		}
		return nil
	})
	return err
}

// Load loads the record script, so that the first write need not.
func (r *Redis) Load(ctx context.Context) error {
	if err := recordScript.Load(ctx, r.rdb).Err(); err != nil {
		return fmt.Errorf("load usage script: %w", err)
	}
	return nil
}

// Summary is key's ledger for a month.
func (r *Redis) Summary(ctx context.Context, key, period string) (*Summary, error) {
	h, err := r.rdb.HGetAll(ctx, r.month(period)+"key:"+key).Result()
	if err != nil {
		return nil, fmt.Errorf("usage of %s in %s: %w", key, period, err)
	}
	return summarize(period, h), nil
}

// All is every key's ledger for a month, read in one round trip after the
// key set.
func (r *Redis) All(ctx context.Context, period string) (map[string]*Summary, error) {
	m := r.month(period)
	keys, err := r.rdb.SMembers(ctx, m+"keys").Result()
	if err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGetAll(ctx, m+"key:"+k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	out := make(map[string]*Summary, len(keys))
	for i, k := range keys {
		out[k] = summarize(period, cmds[i].Val())
	}
	return out, nil
}

// summarize reads a month hash of "model:field" → count.
func summarize(period string, h map[string]string) *Summary {
	s := newSummary(period)
	for f, v := range h {
		i := strings.LastIndexByte(f, ':')
		if i < 0 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		var row Row
		switch f[i+1:] {
		case "prompt":
			row.Prompt = n
		case "completion":
			row.Completion = n
		case "requests":
			row.Requests = n
		}
		s.add(f[:i], row)
	}
	return s
}
