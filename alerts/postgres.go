package alerts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres keeps deliveries in alert_deliveries (internal/pgdb has the
// schema): its primary key (subject, period, threshold) lets one insert
// win across replicas, and a row is leased with FOR UPDATE SKIP LOCKED.
type Postgres struct{ pool *pgxpool.Pool }

// NewPostgres keeps deliveries in pool.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

func (p *Postgres) Claim(ctx context.Context, a Alert) (bool, error) {
	tag, err := p.pool.Exec(ctx, `INSERT INTO alert_deliveries (subject, period, threshold, event_id, alert)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, a.Subject(), a.Period, a.ThresholdText(), a.ID, a)
	if err != nil {
		return false, fmt.Errorf("record alert %s: %w", a.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

const deliveryColumns = `alert, state, attempts, last_error, delivered_to, claimed_at, next_at, delivered_at, failed_at`

func scanDelivery(row pgx.Row) (Delivery, error) {
	var d Delivery
	err := row.Scan(&d.Alert, &d.State, &d.Attempts, &d.LastError, &d.DeliveredTo, &d.ClaimedAt, &d.NextAt, &d.DeliveredAt, &d.FailedAt)
	return d, err
}

func (p *Postgres) Due(ctx context.Context, now, lease time.Time, limit int) ([]Delivery, error) {
	return p.query(ctx, `UPDATE alert_deliveries SET next_at = $2 WHERE event_id IN (
		SELECT event_id FROM alert_deliveries WHERE state = 'pending' AND next_at <= $1
		ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING `+deliveryColumns, now, lease, limit)
}

func (p *Postgres) Record(ctx context.Context, d Delivery) error {
	_, err := p.pool.Exec(ctx, `UPDATE alert_deliveries SET state = $2, attempts = $3, last_error = $4, delivered_to = $5,
		next_at = $6, delivered_at = $7, failed_at = $8 WHERE event_id = $1`,
		d.ID, d.State, d.Attempts, d.LastError, d.DeliveredTo, d.NextAt, d.DeliveredAt, d.FailedAt)
	if err != nil {
		return fmt.Errorf("record alert %s: %w", d.ID, err)
	}
	return nil
}

func (p *Postgres) List(ctx context.Context, f Filter) ([]Delivery, error) {
	return p.query(ctx, `SELECT `+deliveryColumns+` FROM alert_deliveries
		WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR period = $2) AND ($3 = '' OR state = $3)
		ORDER BY claimed_at DESC, event_id LIMIT $4`, f.Subject, f.Period, f.State, f.Limit)
}

func (p *Postgres) Redeliver(ctx context.Context, id string, now time.Time) (Delivery, error) {
	ds, err := p.query(ctx, `UPDATE alert_deliveries SET state = 'pending', attempts = 0, last_error = '',
		delivered_to = '{}', claimed_at = $2, next_at = $2, delivered_at = NULL, failed_at = NULL
		WHERE event_id = $1 RETURNING `+deliveryColumns, id, now)
	if err != nil {
		return Delivery{}, err
	}
	if len(ds) == 0 {
		return Delivery{}, fmt.Errorf("redeliver %s: %w", id, ErrNotFound)
	}
	return ds[0], nil
}

func (p *Postgres) query(ctx context.Context, sql string, args ...any) ([]Delivery, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("alert deliveries: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("alert deliveries: %w", err)
		}
		d.ClaimedAt, d.NextAt = d.ClaimedAt.UTC(), d.NextAt.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("alert deliveries: %w", err)
	}
	return out, nil
}
