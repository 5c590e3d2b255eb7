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

// The administration of stored keys: a Registry without a store has
// none, and must not be handed to the admin API.

// Spec is what an operator asks for in a new key.
type Spec struct {
	Name      string
	Tier      string
	Models    []string
	Limits    Limits
	Scopes    []string // nil: DefaultScopes
	Project   string   // "" for none
	Budget    *Budget
	ExpiresAt *time.Time
	Metadata  map[string]string
}

// Create makes a key and returns it with its secret, which is not kept
// and cannot be shown again.
func (r *Registry) Create(ctx context.Context, s Spec) (*Key, string, error) {
	scopes := s.Scopes
	if scopes == nil {
		scopes = DefaultScopes
	}
	for attempt := 0; ; attempt++ {
		id, secret := newSecret()
		k := &Key{
			ID: id, Name: s.Name, Tier: s.Tier, Models: s.Models, Limits: s.Limits, Scopes: scopes, Project: s.Project, Budget: s.Budget,
			Metadata: s.Metadata, Prefix: prefixOf(secret), Hash: Digest(secret),
			CreatedAt: r.opt.Now().UTC().Truncate(time.Millisecond), ExpiresAt: s.ExpiresAt,
		}
		if err := r.check(k); err != nil {
			return nil, "", err
		}
		err := r.store.Create(ctx, k)
		if errors.Is(err, ErrExists) && attempt < 3 {
			continue // 50 random bits of id collided: draw again
		}
		if err != nil {
			if !errors.Is(err, ErrExists) {
				// The store may have taken the key before it failed to
				// answer; its secret is never shown, so it must not stay.
				r.undo(k)
			}
			return nil, "", err
		}
		return k, secret, nil
	}
}

// Get returns the key with id: a configuration key, or a stored one.
func (r *Registry) Get(ctx context.Context, id string) (*Key, error) {
	for _, s := range r.conf.Load().Static {
		if s.ID == id {
			return s.key(), nil
		}
	}
	return r.store.Get(ctx, id)
}

// List returns every key: the configuration's, in its order, then the
// stored ones, oldest first.
func (r *Registry) List(ctx context.Context) ([]*Key, error) {
	stored, err := r.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Key, 0, len(r.conf.Load().Static)+len(stored))
	for _, s := range r.conf.Load().Static {
		out = append(out, s.key())
	}
	return append(out, stored...), nil
}

// Update applies change to the key with id and stores it; every replica
// drops the old version within one Poll, this one at once.
func (r *Registry) Update(ctx context.Context, id string, change func(*Key) error) (*Key, error) {
	for _, s := range r.conf.Load().Static {
		if s.ID == id {
			return nil, fmt.Errorf("key %s: %w", id, ErrConfigured)
		}
	}
	cur, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	k := cur.clone()
	if err := change(k); err != nil {
		return nil, err
	}
	if err := r.check(k); err != nil {
		return nil, err
	}
	if err := r.store.Update(ctx, k); err != nil {
		return nil, err
	}
	r.evict(id)
	return k, nil
}

// Revoke ends the key with id for good; revoking it again changes nothing.
func (r *Registry) Revoke(ctx context.Context, id string) (*Key, error) {
	now := r.opt.Now().UTC()
	return r.Update(ctx, id, func(k *Key) error {
		if k.RevokedAt == nil {
			k.RevokedAt = &now
		}
		return nil
	})
}

// check validates what the store needs and what Options.Validate adds.
func (r *Registry) check(k *Key) error {
	for _, s := range k.Scopes {
		known := false
		for _, a := range AllScopes {
			known = known || s == a
		}
		if !known {
			return &InvalidError{Field: "scopes", Msg: fmt.Sprintf("unknown scope %q; the scopes are chat, chat:stream, models, usage", s)}
		}
	}
	if err := checkLimits(k.Limits); err != nil {
		return err
	}
	if err := CheckBudget(k.Budget, "budget"); err != nil {
		return err
	}
	if err := checkName(k.Name); err != nil {
		return err
	}
	if err := checkMetadata(k.Metadata); err != nil {
		return err
	}
	return r.checkConfigured(k)
}

// checkConfigured checks a key against the configuration: its tier and
// models must exist, and its id must not be a configuration key's.
func (r *Registry) checkConfigured(k *Key) error {
	if _, ok := r.conf.Load().Tiers[k.Tier]; !ok {
		names := slices.Sorted(maps.Keys(r.conf.Load().Tiers))
		return &InvalidError{Field: "tier", Msg: fmt.Sprintf("unknown tier %q; tiers: %s", k.Tier, strings.Join(names, ", "))}
	}
	r.knowProject(context.Background(), k.Project)
	projects := r.projects.Load()
	if _, ok := projects.all[k.Project]; k.Project != "" && !ok {
		names := slices.Sorted(maps.Keys(projects.all))
		return &InvalidError{Field: "project", Msg: fmt.Sprintf("unknown project %q; projects: %s", k.Project, strings.Join(names, ", "))}
	}
	for _, m := range k.Models {
		if !r.opt.KnownModel(m) {
			return &InvalidError{Field: "models", Msg: fmt.Sprintf("unknown model %q", m)}
		}
	}
	for _, e := range projects.static {
		if e.id.ID == k.ID {
			return &InvalidError{Field: "id", Msg: "the id of a configuration key"}
		}
	}
	return nil
}

// InvalidError is a key spec or change the registry refuses.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

// undoTries bounds the attempts to undo a create whose outcome is not
// known: about 10 minutes, doubling from 100 ms to 10 s.
const undoTries = 70

// undo deletes a key whose create failed, in the background until the
// store answers: a failed create leaves nothing behind once the store is
// back (the key could never have been used: its secret was not shown).
func (r *Registry) undo(k *Key) {
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		wait := 100 * time.Millisecond
		for i := 0; i < undoTries; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), r.opt.Timeout)
			err := r.store.Delete(ctx, k.ID, k.Hash)
			cancel()
			if err == nil {
				r.opt.Log.Info("failed key create undone", "key_id", k.ID)
				return
			}
			select {
			case <-r.stop:
				r.opt.Log.Error("failed key create not undone before shutdown; revoke it", "key_id", k.ID, "err", err)
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 10*time.Second)
		}
		r.opt.Log.Error("failed key create not undone; revoke it", "key_id", k.ID)
	}()
}
