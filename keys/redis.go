package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keeps keys shared by every replica. Every key of it shares the
// hash tag {keys}, so that a Cluster runs each script on one node; key
// administration is far too rare for one slot to matter.
//
//	PREFIX{keys}:key:ID     the key's record (JSON)
//	PREFIX{keys}:digest:HEX the id of the key whose secret has this SHA-256
//	PREFIX{keys}:ids        every id
//	PREFIX{keys}:changes    a stream of changed ids, read by every replica
//	PREFIX{keys}:deleted:ID a day's tombstone of a key whose failed create was undone
//	PREFIX{keys}:used       last use, unix ms by id
type Redis struct {
	rdb redis.UniversalClient
	p   string
}

// NewRedis returns a key store in rdb; every key starts with prefix.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, p: prefix + "{keys}:"}
}

// changesLen bounds the change stream; a replica that falls further
// behind than this drops its whole cache.
const changesLen = 10_000

// createScript: KEYS record, digest index, ids, changes, tombstone; ARGV id, JSON,
// stream length.
var createScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 or redis.call("EXISTS", KEYS[2]) == 1 or redis.call("EXISTS", KEYS[5]) == 1 then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2])
redis.call("SET", KEYS[2], ARGV[1])
redis.call("SADD", KEYS[3], ARGV[1])
redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[3], "*", "id", ARGV[1])
return 1
`)

// updateScript: KEYS record, changes; ARGV id, JSON, stream length.
var updateScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2])
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[3], "*", "id", ARGV[1])
return 1
`)

// deleteScript: KEYS record, digest, ids, changes, tombstone; ARGV id,
// stream length. The tombstone (a day) refuses a create of the same id
// that arrives after it: the create being undone, sent before a stall.
var deleteScript = redis.NewScript(`
redis.call("SET", KEYS[5], "1", "EX", 86400)
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("SREM", KEYS[3], ARGV[1])
redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[2], "*", "id", ARGV[1])
return 1
`)

// Delete removes the key with id and digest, if it is there.
func (r *Redis) Delete(ctx context.Context, id, digest string) error {
	err := deleteScript.Run(ctx, r.rdb, []string{r.p + "key:" + id, r.p + "digest:" + digest, r.p + "ids", r.p + "changes", r.p + "deleted:" + id},
		id, changesLen).Err()
	if err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}

func (r *Redis) Create(ctx context.Context, k *Key) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	n, err := createScript.Run(ctx, r.rdb, []string{r.p + "key:" + k.ID, r.p + "digest:" + k.Hash, r.p + "ids", r.p + "changes", r.p + "deleted:" + k.ID},
		k.ID, b, changesLen).Int()
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("create key %s: %w", k.ID, ErrExists)
	}
	return nil
}

func (r *Redis) Update(ctx context.Context, k *Key) error {
	stored := *k
	stored.LastUsedAt = nil // kept apart, in the used set
	b, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	n, err := updateScript.Run(ctx, r.rdb, []string{r.p + "key:" + k.ID, r.p + "changes"}, k.ID, b, changesLen).Int()
	if err != nil {
		return fmt.Errorf("update key %s: %w", k.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("update key %s: %w", k.ID, ErrNotFound)
	}
	return nil
}

func (r *Redis) Get(ctx context.Context, id string) (*Key, error) {
	var rec, used *redis.Cmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.Do(ctx, "GET", r.p+"key:"+id)
		used = p.Do(ctx, "ZSCORE", r.p+"used", id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	s, err := rec.Text()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get key %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	k, err := decodeKey(s)
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	if ms, err := used.Float64(); err == nil {
		t := time.UnixMilli(int64(ms)).UTC()
		k.LastUsedAt = &t
	}
	return k, nil
}

func (r *Redis) ByDigest(ctx context.Context, digest string) (*Key, error) {
	id, err := r.rdb.Get(ctx, r.p+"digest:"+digest).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("key by digest: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("key by digest: %w", err)
	}
	return r.Get(ctx, id)
}

func (r *Redis) List(ctx context.Context) ([]*Key, error) {
	ids, err := r.rdb.SMembers(ctx, r.p+"ids").Result()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	recs := make([]*redis.StringCmd, len(ids))
	var used *redis.ZSliceCmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			recs[i] = p.Get(ctx, r.p+"key:"+id)
		}
		used = p.ZRangeWithScores(ctx, r.p+"used", 0, -1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	last := map[string]time.Time{}
	for _, z := range used.Val() {
		last[z.Member.(string)] = time.UnixMilli(int64(z.Score)).UTC()
	}
	out := make([]*Key, 0, len(ids))
	for _, c := range recs {
		k, err := decodeKey(c.Val())
		if err != nil {
			continue // deleted between the two reads
		}
		if t, ok := last[k.ID]; ok {
			k.LastUsedAt = &t
		}
		out = append(out, k)
	}
	sortKeys(out)
	return out, nil
}

func (r *Redis) Changes(ctx context.Context, since string) ([]string, string, bool, error) {
	if since == "" {
		last, err := r.rdb.XRevRangeN(ctx, r.p+"changes", "+", "-", 1).Result()
		if err != nil {
			return nil, "", false, fmt.Errorf("key changes: %w", err)
		}
		if len(last) == 0 {
			return nil, "0-0", false, nil
		}
		return nil, last[0].ID, false, nil
	}
	var first, msgs *redis.XMessageSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		first = p.XRangeN(ctx, r.p+"changes", "-", "+", 1)
		msgs = p.XRangeN(ctx, r.p+"changes", "("+since, "+", 1000)
		return nil
	})
	if err != nil {
		return nil, since, false, fmt.Errorf("key changes: %w", err)
	}
	// Entries after since were trimmed away: some changes are lost.
	reset := since != "0-0" && len(first.Val()) > 0 && streamBefore(since, first.Val()[0].ID)
	ids := make([]string, 0, len(msgs.Val()))
	next := since
	for _, m := range msgs.Val() {
		if id, ok := m.Values["id"].(string); ok {
			ids = append(ids, id)
		}
		next = m.ID
	}
	return ids, next, reset, nil
}

// streamBefore reports whether stream id a is older than b, and not b's
// direct predecessor that a trim would keep.
func streamBefore(a, b string) bool {
	ams, aseq := splitStreamID(a)
	bms, bseq := splitStreamID(b)
	if ams != bms {
		return ams < bms
	}
	return aseq < bseq-1
}

func splitStreamID(id string) (int64, int64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, _ := strconv.ParseInt(id[:i], 10, 64)
			seq, _ := strconv.ParseInt(id[i+1:], 10, 64)
			return ms, seq
		}
	}
	ms, _ := strconv.ParseInt(id, 10, 64)
	return ms, 0
}

func (r *Redis) Touch(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	zs := make([]redis.Z, 0, len(used))
	for id, t := range used {
		zs = append(zs, redis.Z{Member: id, Score: float64(t.UnixMilli())})
	}
	if err := r.rdb.ZAddGT(ctx, r.p+"used", zs...).Err(); err != nil {
		return fmt.Errorf("touch %d keys: %w", len(used), err)
	}
	return nil
}

func decodeKey(s string) (*Key, error) {
	var k Key
	if err := json.Unmarshal([]byte(s), &k); err != nil || k.ID == "" {
		return nil, fmt.Errorf("bad key record: %w", errors.Join(err, ErrNotFound))
	}
	return &k, nil
}

func sortKeys(ks []*Key) {
	sort.Slice(ks, func(i, j int) bool {
		if !ks[i].CreatedAt.Equal(ks[j].CreatedAt) {
			return ks[i].CreatedAt.Before(ks[j].CreatedAt)
		}
		return ks[i].ID < ks[j].ID
	})
}
