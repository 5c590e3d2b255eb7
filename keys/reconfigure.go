package keys

import (
	"context"
	"fmt"

	"github.com/obol/obol/quota"
)

// configured is what the configuration file gives a Registry: its keys,
// tiers and projects.
type configured struct {
	Static   []Static
	Tiers    quota.Tiers
	Projects Projects
}

// Reconfigure replaces the configuration's keys, tiers and projects (a
// reload): lookups from the next on see them, and every cached stored
// key is resolved again, against the new tiers and projects. A
// configuration that does not resolve (a key of an unknown tier)
// changes nothing.
func (r *Registry) Reconfigure(ctx context.Context, static []Static, tiers quota.Tiers, projects Projects) error {
	if tiers == nil {
		tiers = quota.DefaultTiers
	}
	all := make(Projects, len(projects))
	for id, p := range projects {
		all[id] = p
	}
	if _, err := newStaticIndex(static, tiers, all); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	r.reload.Lock()
	defer r.reload.Unlock()
	prev := r.conf.Swap(&configured{Static: static, Tiers: tiers, Projects: projects})
	switch err := r.loadProjects(ctx); {
	case err == errKeepProjects:
		// The store's projects cannot be read now: keep those last read
		// beside the new configuration's.
		last := r.projects.Load()
		for id, p := range last.all {
			if _, configured := prev.Projects[id]; !configured {
				if _, ok := all[id]; !ok {
					all[id] = p
				}
			}
		}
		index, err := newStaticIndex(static, tiers, all)
		if err != nil {
			r.conf.Store(prev)
			return fmt.Errorf("keys: %w", err)
		}
		r.projects.Store(&projectSet{all: all, static: index, loaded: last.loaded})
	case err != nil:
		r.conf.Store(prev)
		return fmt.Errorf("keys: %w", err)
	}
	r.mu.Lock()
	clear(r.byHash)
	clear(r.hashOf)
	r.missing = 0
	r.gen++
	r.mu.Unlock()
	return nil
}
