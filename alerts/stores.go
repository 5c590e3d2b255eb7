package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	bolt "go.etcd.io/bbolt"
)

// Postgres keeps claims in alert_deliveries (internal/pgdb has the
// schema): its primary key (subject, period, threshold) lets one insert
// win across replicas.
type Postgres struct{ pool *pgxpool.Pool }

// NewPostgres keeps claims in pool.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

func (p *Postgres) Claim(ctx context.Context, a Alert) (bool, error) {
	tag, err := p.pool.Exec(ctx, `INSERT INTO alert_deliveries (subject, period, threshold, event_id, alert)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, a.Subject(), a.Period, a.ThresholdText(), a.ID, a)
	if err != nil {
		return false, fmt.Errorf("claim alert %s: %w", a.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (p *Postgres) Sent(ctx context.Context, a Alert, delivered bool, attempts int) error {
	_, err := p.pool.Exec(ctx, `UPDATE alert_deliveries SET attempts = $2,
		delivered_at = CASE WHEN $3 THEN now() END WHERE event_id = $1`, a.ID, attempts, delivered)
	if err != nil {
		return fmt.Errorf("record alert %s: %w", a.ID, err)
	}
	return nil
}

// Abandoned claims again, for this replica, at most limit alerts claimed
// before cutoff whose claimant never finished trying (it died).
func (p *Postgres) Abandoned(ctx context.Context, cutoff time.Time, limit int) ([]Alert, error) {
	rows, err := p.pool.Query(ctx, `UPDATE alert_deliveries SET claimed_at = now() WHERE event_id IN (
		SELECT event_id FROM alert_deliveries WHERE delivered_at IS NULL AND attempts = 0 AND claimed_at < $1
		ORDER BY claimed_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING alert`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("abandoned alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("abandoned alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Embedded keeps claims in the single replica's bbolt file.
type Embedded struct{ db *bolt.DB }

var claimsBucket = []byte("alert_deliveries") // event id → claim (JSON)

// OpenEmbedded prepares the claims bucket in db.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(claimsBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded alert claims: %w", err)
	}
	return &Embedded{db: db}, nil
}

type claim struct {
	Subject     string     `json:"subject"`
	Period      string     `json:"period"`
	Threshold   string     `json:"threshold"`
	ClaimedAt   time.Time  `json:"claimed_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	Attempts    int        `json:"attempts"`
	Alert       Alert      `json:"alert"`
}

func (e *Embedded) Claim(_ context.Context, a Alert) (bool, error) {
	won := false
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		if b.Get([]byte(a.ID)) != nil {
			return nil
		}
		v, _ := json.Marshal(claim{Subject: a.Subject(), Period: a.Period, Threshold: a.ThresholdText(), ClaimedAt: time.Now().UTC(), Alert: a})
		won = true
		return b.Put([]byte(a.ID), v)
	})
	if err != nil {
		return false, fmt.Errorf("claim alert %s: %w", a.ID, err)
	}
	return won, nil
}

func (e *Embedded) Sent(_ context.Context, a Alert, delivered bool, attempts int) error {
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		var c claim
		if json.Unmarshal(b.Get([]byte(a.ID)), &c) != nil {
			return nil
		}
		c.Attempts = attempts
		if delivered {
			now := time.Now().UTC()
			c.DeliveredAt = &now
		}
		v, _ := json.Marshal(c)
		return b.Put([]byte(a.ID), v)
	})
	if err != nil {
		return fmt.Errorf("record alert %s: %w", a.ID, err)
	}
	return nil
}

// Abandoned claims again the alerts claimed before cutoff that were never
// finished (the process stopped while sending), at most limit.
func (e *Embedded) Abandoned(_ context.Context, cutoff time.Time, limit int) ([]Alert, error) {
	var out []Alert
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		var again []claim
		var ids [][]byte
		b.ForEach(func(k, v []byte) error {
			var c claim
			if len(out)+len(again) < limit && json.Unmarshal(v, &c) == nil && c.DeliveredAt == nil && c.Attempts == 0 && c.ClaimedAt.Before(cutoff) {
				again, ids = append(again, c), append(ids, append([]byte(nil), k...))
			}
			return nil
		})
		for i, c := range again {
			c.ClaimedAt = time.Now().UTC()
			v, _ := json.Marshal(c)
			if err := b.Put(ids[i], v); err != nil {
				return err
			}
			out = append(out, c.Alert)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("abandoned alerts: %w", err)
	}
	return out, nil
}
