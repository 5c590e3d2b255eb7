package keys

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var projectsBucket = []byte("projects") // id → record (JSON)

func (e *Embedded) ListProjects(_ context.Context) ([]*Project, error) {
	var out []*Project
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(projectsBucket).ForEach(func(_, v []byte) error {
			var p Project
			if json.Unmarshal(v, &p) == nil && p.ID != "" {
				out = append(out, &p)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return out, nil
}

func (e *Embedded) CreateProject(_ context.Context, p *Project) error {
	return e.putProject(p, true)
}

func (e *Embedded) UpdateProject(_ context.Context, p *Project) error {
	return e.putProject(p, false)
}

func (e *Embedded) putProject(p *Project, create bool) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(projectsBucket)
		exists := bk.Get([]byte(p.ID)) != nil
		switch {
		case create && exists:
			return ErrExists
		case !create && !exists:
			return ErrNotFound
		}
		return bk.Put([]byte(p.ID), b)
	})
	if err != nil {
		return fmt.Errorf("store project %s: %w", p.ID, err)
	}
	return nil
}

func (e *Embedded) DeleteProject(_ context.Context, id string) error {
	err := e.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(projectsBucket)
		if bk.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return bk.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	return nil
}
