package usage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// request_log's partitions, one per UTC day: created ahead of the days
// they hold, dropped whole when they pass the log's days.

// partitionsAhead are the days, today included, whose partitions exist.
const partitionsAhead = 3

func partitionName(day time.Time) string { return "request_log_" + day.Format("20060102") }

// keepPartitions creates the partitions of today and the days ahead and
// drops those past the log's days, and deletes what the default
// partition holds past them.
func (p *Postgres) keepPartitions(ctx context.Context, now time.Time) error {
	today := now.UTC().Truncate(24 * time.Hour)
	for i := range partitionsAhead {
		if err := p.createPartition(ctx, today.AddDate(0, 0, i)); err != nil {
			return err
		}
	}
	oldest := today.AddDate(0, 0, -max(p.logDays, 0))
	rows, err := p.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class parent ON parent.oid = i.inhparent
		WHERE parent.relname = 'request_log' AND parent.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return fmt.Errorf("request_log partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("request_log partitions: %w", err)
	}
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, "request_log_"))
		if err != nil || !day.Before(oldest) {
			continue // the default partition, or a day kept
		}
		if _, err := p.pool.Exec(ctx, "DROP TABLE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("drop %s: %w", name, err)
		}
	}
	_, err = p.pool.Exec(ctx, "DELETE FROM request_log_default WHERE at < $1", oldest)
	return err
}

// createPartition creates day's partition unless it exists; rows of that
// day in the default partition move into it.
func (p *Postgres) createPartition(ctx context.Context, day time.Time) error {
	name := pgx.Identifier{partitionName(day)}.Sanitize()
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("partition %s: %w", name, err)
	}
	defer tx.Rollback(ctx)
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", partitionName(day)).Scan(&exists); err != nil || exists {
		return err
	}
	from, to := day, day.AddDate(0, 0, 1)
	for _, stmt := range []string{
		"CREATE TABLE " + name + " (LIKE request_log INCLUDING DEFAULTS)",
		"INSERT INTO " + name + " SELECT * FROM request_log_default WHERE at >= $1 AND at < $2",
		"DELETE FROM request_log_default WHERE at >= $1 AND at < $2",
		"ALTER TABLE request_log ATTACH PARTITION " + name + " FOR VALUES FROM ('" + from.Format(time.RFC3339) + "') TO ('" + to.Format(time.RFC3339) + "')",
	} {
		var args []any
		if strings.Contains(stmt, "$1") {
			args = []any{from, to}
		}
		if _, err := tx.Exec(ctx, stmt, args...); err != nil {
			return fmt.Errorf("partition %s: %w", name, err)
		}
	}
	return tx.Commit(ctx)
}
