package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The projects table: a change is a transaction that appends
// "project:<id>" to the change log, which tells every replica to read
// the projects again.

func (p *Postgres) ListProjects(ctx context.Context) ([]*Project, error) {
	rows, err := p.pool.Query(ctx, "SELECT id, name, limits, budget, metadata, created_at FROM projects ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	defer rows.Close()
	var out []*Project
	for rows.Next() {
		var pr Project
		var limits, meta []byte
		if err := rows.Scan(&pr.ID, &pr.Name, &limits, &pr.Budget, &meta, &pr.CreatedAt); err != nil {
			return nil, fmt.Errorf("list projects: %w", err)
		}
		json.Unmarshal(limits, &pr.Limits)
		json.Unmarshal(meta, &pr.Metadata)
		if len(pr.Metadata) == 0 {
			pr.Metadata = nil
		}
		out = append(out, &pr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return out, nil
}

func (p *Postgres) CreateProject(ctx context.Context, pr *Project) error {
	limits, _ := json.Marshal(pr.Limits)
	meta, _ := json.Marshal(nonNil(pr.Metadata))
	err := p.change(ctx, projectChange+pr.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO projects (id, name, limits, budget, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			pr.ID, pr.Name, limits, pr.Budget, meta, pr.CreatedAt)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return ErrExists
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create project %s: %w", pr.ID, err)
	}
	return nil
}

func (p *Postgres) UpdateProject(ctx context.Context, pr *Project) error {
	limits, _ := json.Marshal(pr.Limits)
	meta, _ := json.Marshal(nonNil(pr.Metadata))
	err := p.change(ctx, projectChange+pr.ID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE projects SET name = $2, limits = $3, budget = $4, metadata = $5 WHERE id = $1`,
			pr.ID, pr.Name, limits, pr.Budget, meta)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("update project %s: %w", pr.ID, err)
	}
	return nil
}

func (p *Postgres) DeleteProject(ctx context.Context, id string) error {
	err := p.change(ctx, projectChange+id, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM projects WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	return nil
}
