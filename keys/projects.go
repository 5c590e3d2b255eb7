package keys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// projectSet is the projects keys resolve against, the configuration's
// and the store's, and the configuration's keys resolved against them:
// replaced whole when a project changes.
type projectSet struct {
	all    Projects
	static staticIndex
	loaded bool // the store's projects were read
}

// loadProjects reads the store's projects and resolves the
// configuration's keys against them with the configuration's.
func (r *Registry) loadProjects(ctx context.Context) error {
	all := make(Projects, len(r.conf.Load().Projects))
	for id, p := range r.conf.Load().Projects {
		all[id] = p
	}
	loaded := true
	if r.store != nil {
		cctx, cancel := context.WithTimeout(ctx, r.opt.Timeout)
		stored, err := r.store.ListProjects(cctx)
		cancel()
		if err != nil {
			if prev := r.projects.Load(); prev != nil && prev.loaded {
				// What was read before stays in use, as cached keys do.
				r.opt.Log.Warn("stored projects cannot be read; the last read stays in use", "err", err)
				return errKeepProjects
			}
			loaded = false
			r.opt.Log.Warn("stored projects cannot be read; their keys wait until they can", "err", err)
		}
		for _, p := range stored {
			if _, ok := all[p.ID]; !ok {
				all[p.ID] = p
			}
		}
	}
	static, err := newStaticIndex(r.conf.Load().Static, r.conf.Load().Tiers, all)
	if err != nil {
		return err
	}
	r.projects.Store(&projectSet{all: all, static: static, loaded: loaded})
	return nil
}

// errKeepProjects: the store's projects could not be read again; the
// last read stays.
var errKeepProjects = errors.New("projects kept")

// errUnknownProject: a key names a project the registry does not hold.
var errUnknownProject = errors.New("no such project")

// knowProject reports whether project id exists, reading the store's
// projects again when this replica does not hold it: one made on another
// replica is in the system of record before this one's change log reader
// sees it. The keys already resolved stay (a project changed meanwhile
// reaches them with the change log, as before); misses read the store
// one at a time.
func (r *Registry) knowProject(ctx context.Context, id string) bool {
	if _, ok := r.projects.Load().all[id]; ok || id == "" || r.store == nil {
		return ok
	}
	r.reload.Lock()
	defer r.reload.Unlock()
	if _, ok := r.projects.Load().all[id]; ok {
		return true // read by the miss before this one
	}
	if err := r.loadProjects(ctx); err != nil && !errors.Is(err, errKeepProjects) {
		r.opt.Log.Error("projects not read again", "err", err)
	}
	_, ok := r.projects.Load().all[id]
	return ok
}

// reloadProjects reads the projects again and forgets every resolved key.
// It reports false when they could not be read: the keys resolved against
// the last read stay, for the change log's reader to try again.
func (r *Registry) reloadProjects() bool {
	err := r.loadProjects(context.Background())
	switch {
	case errors.Is(err, errKeepProjects):
		return false
	case err != nil:
		r.opt.Log.Error("projects not reloaded", "err", err)
	default:
		r.reset()
	}
	return true
}

// Project returns the project with id, from the configuration or the store.
func (r *Registry) Project(id string) (*Project, bool) {
	r.knowProject(context.Background(), id)
	p, ok := r.projects.Load().all[id]
	if !ok {
		return nil, false
	}
	return p.clone(), true
}

// Projects returns every project, by id.
func (r *Registry) Projects() []*Project {
	all := r.projects.Load().all
	out := make([]*Project, 0, len(all))
	for _, id := range slices.Sorted(maps.Keys(all)) {
		out = append(out, all[id].clone())
	}
	return out
}

// CreateProject stores a new project; one without an id is given one,
// proj_ and ten random characters.
func (r *Registry) CreateProject(ctx context.Context, p *Project) error {
	if p.ID == "" {
		p.ID = "proj_" + strings.ToLower(randomBase32(10))
	}
	if err := CheckProject(p); err != nil {
		return err
	}
	if _, ok := r.conf.Load().Projects[p.ID]; ok {
		return fmt.Errorf("project %s: %w", p.ID, ErrExists)
	}
	p.CreatedAt = r.opt.Now().UTC().Truncate(time.Millisecond)
	if err := r.store.CreateProject(ctx, p); err != nil {
		return err
	}
	r.reloadProjects()
	return nil
}

// UpdateProject applies change to a stored project; every replica
// resolves its keys again within one Poll, this one at once.
func (r *Registry) UpdateProject(ctx context.Context, id string, change func(*Project) error) (*Project, error) {
	if err := r.configured(id); err != nil {
		return nil, err
	}
	r.knowProject(ctx, id)
	cur, ok := r.projects.Load().all[id]
	if !ok {
		return nil, fmt.Errorf("project %s: %w", id, ErrNotFound)
	}
	p := cur.clone()
	if err := change(p); err != nil {
		return nil, err
	}
	p.ID = id
	if err := CheckProject(p); err != nil {
		return nil, err
	}
	if err := r.store.UpdateProject(ctx, p); err != nil {
		return nil, err
	}
	r.reloadProjects()
	return p, nil
}

// DeleteProject removes a stored project no key belongs to.
func (r *Registry) DeleteProject(ctx context.Context, id string) error {
	if err := r.configured(id); err != nil {
		return err
	}
	ks, err := r.store.List(ctx)
	if err != nil {
		return err
	}
	var members []string
	for _, k := range ks {
		if k.Project == id && k.RevokedAt == nil {
			members = append(members, k.ID)
		}
	}
	if len(members) > 0 {
		return fmt.Errorf("%w: keys %s belong to project %s; move or revoke them first", ErrInUse, strings.Join(members, ", "), id)
	}
	if err := r.store.DeleteProject(ctx, id); err != nil {
		return err
	}
	r.reloadProjects()
	return nil
}

// ErrConfigured is a change asked of a key or project the configuration
// declares.
var ErrConfigured = errors.New("declared in the configuration file; change it there")

func (r *Registry) configured(id string) error {
	if _, ok := r.conf.Load().Projects[id]; ok {
		return fmt.Errorf("project %s: %w", id, ErrConfigured)
	}
	return nil
}
