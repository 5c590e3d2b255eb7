package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres keeps keys in PostgreSQL, the system of record of several
// replicas: a change is a transaction that also appends to
// api_key_changes, which every replica's Registry reads within a Poll.
// internal/pgdb keeps the schema.
type Postgres struct {
	pool *pgxpool.Pool
}

// NewPostgres keeps keys in pool.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

// changeLock serialises key changes, so that change sequence numbers
// commit in order and a reader never passes one still uncommitted. Key
// administration is rare enough for one lock.
const changeLock = 0x6f626f6c6b // "obolk"

// changeDays is how long the change log is kept; a replica further behind
// drops its whole cache.
const changeDays = 1

const keyColumns = `id, sha256, prefix, name, tier, models, scopes, limits, metadata, created_at, expires_at, revoked_at, last_used_at, project, budget`

// change runs f in a transaction that appends id to the change log.
func (p *Postgres) change(ctx context.Context, id string, f func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", changeLock); err != nil {
			return err
		}
		if err := f(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO api_key_changes (key_id) VALUES ($1)", id)
		return err
	})
}

func (p *Postgres) Create(ctx context.Context, k *Key) error {
	limits, _ := json.Marshal(k.Limits)
	meta, _ := json.Marshal(nonNil(k.Metadata))
	err := p.change(ctx, k.ID, func(tx pgx.Tx) error {
		var gone bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM api_key_tombstones WHERE id = $1)", k.ID).Scan(&gone); err != nil {
			return err
		}
		if gone {
			return ErrExists
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			k.ID, k.Hash, k.Prefix, k.Name, k.Tier, nonNilList(k.Models), nonNilList(k.Scopes), limits, meta,
			k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.Project, k.Budget)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	return nil
}

// Delete removes the key with id and digest, if it is there, and leaves
// a tombstone that refuses a late create of the same id.
func (p *Postgres) Delete(ctx context.Context, id, digest string) error {
	err := p.change(ctx, id, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO api_key_tombstones (id) VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM api_keys WHERE id = $1 AND sha256 = $2", id, digest)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}

func (p *Postgres) Update(ctx context.Context, k *Key) error {
	limits, _ := json.Marshal(k.Limits)
	meta, _ := json.Marshal(nonNil(k.Metadata))
	err := p.change(ctx, k.ID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET name = $2, tier = $3, models = $4, scopes = $5, limits = $6, metadata = $7,
			expires_at = $8, revoked_at = $9, project = $10, budget = $11 WHERE id = $1`,
			k.ID, k.Name, k.Tier, nonNilList(k.Models), nonNilList(k.Scopes), limits, meta, k.ExpiresAt, k.RevokedAt, k.Project, k.Budget)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("update key %s: %w", k.ID, err)
	}
	return nil
}

func (p *Postgres) Get(ctx context.Context, id string) (*Key, error) {
	return p.one(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE id = $1", id)
}

func (p *Postgres) ByDigest(ctx context.Context, digest string) (*Key, error) {
	return p.one(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE sha256 = $1", digest)
}

func (p *Postgres) one(ctx context.Context, query, arg string) (*Key, error) {
	rows, err := p.pool.Query(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if len(keys) == 0 {
		return nil, ErrNotFound
	}
	return keys[0], nil
}

func (p *Postgres) List(ctx context.Context) ([]*Key, error) {
	rows, err := p.pool.Query(ctx, "SELECT "+keyColumns+" FROM api_keys ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

func scanKeys(rows pgx.Rows) ([]*Key, error) {
	defer rows.Close()
	var out []*Key
	for rows.Next() {
		var k Key
		var limits, meta []byte
		if err := rows.Scan(&k.ID, &k.Hash, &k.Prefix, &k.Name, &k.Tier, &k.Models, &k.Scopes, &limits, &meta,
			&k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &k.Project, &k.Budget); err != nil {
			return nil, err
		}
		json.Unmarshal(limits, &k.Limits)
		json.Unmarshal(meta, &k.Metadata)
		if len(k.Metadata) == 0 {
			k.Metadata = nil
		}
		out = append(out, &k)
	}
	return out, rows.Err()
}

// Changes reads the change log after since, a sequence number; "" is now.
func (p *Postgres) Changes(ctx context.Context, since string) ([]string, string, bool, error) {
	if since == "" {
		var last int64
		if err := p.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM api_key_changes").Scan(&last); err != nil {
			return nil, "", false, fmt.Errorf("key changes: %w", err)
		}
		return nil, strconv.FormatInt(last, 10), false, nil
	}
	mark, err := strconv.ParseInt(since, 10, 64)
	if err != nil {
		return nil, "", true, nil // not ours: start over
	}
	rows, err := p.pool.Query(ctx, `SELECT seq, key_id, (SELECT min(seq) FROM api_key_changes) FROM api_key_changes
		WHERE seq > $1 ORDER BY seq LIMIT 1000`, mark)
	if err != nil {
		return nil, since, false, fmt.Errorf("key changes: %w", err)
	}
	defer rows.Close()
	var ids []string
	next, reset := mark, false
	for rows.Next() {
		var seq, first int64
		var id string
		if err := rows.Scan(&seq, &id, &first); err != nil {
			return nil, since, false, fmt.Errorf("key changes: %w", err)
		}
		if len(ids) == 0 {
			// Changes after the mark were pruned: some may be missed.
			reset = mark > 0 && first > mark+1
		}
		ids, next = append(ids, id), seq
	}
	if err := rows.Err(); err != nil {
		return nil, since, false, fmt.Errorf("key changes: %w", err)
	}
	return ids, strconv.FormatInt(next, 10), reset, nil
}

// Touch records when keys were last used; a later time wins. It also
// prunes the change log and the tombstones past their days.
func (p *Postgres) Touch(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	at := make([]time.Time, 0, len(used))
	for id, t := range used {
		ids, at = append(ids, id), append(at, t.UTC())
	}
	_, err := p.pool.Exec(ctx, `UPDATE api_keys k SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, at)
	if err != nil {
		return fmt.Errorf("touch %d keys: %w", len(used), err)
	}
	cutoff := time.Now().AddDate(0, 0, -changeDays)
	p.pool.Exec(ctx, "DELETE FROM api_key_changes WHERE at < $1 AND seq < (SELECT max(seq) FROM api_key_changes)", cutoff)
	p.pool.Exec(ctx, "DELETE FROM api_key_tombstones WHERE at < $1", cutoff)
	return nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
