package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obol/obol/quota"
)

// Options configure a Registry.
type Options struct {
	// Static are the keys of the configuration file, looked up before
	// the store's.
	Static []Static
	// Tiers resolve a key's limits; a key of a tier not here is refused
	// at creation and cannot be used. Nil means quota.DefaultTiers.
	Tiers quota.Tiers
	// Projects are the configuration's projects; the store's are added
	// to them (a stored one of the same id is ignored).
	Projects Projects
	// KnownModel reports whether a model exists, to check a key's
	// models at creation; nil accepts any name.
	KnownModel func(name string) bool
	// Poll is how often the store's change log is read; 0 means 250 ms,
	// well inside the one second in which a revocation must be seen
	// everywhere.
	Poll time.Duration
	// TouchEvery is how often last-use times are written; 0 means 10 s.
	TouchEvery time.Duration
	// Timeout bounds a store call; 0 means 1 s.
	Timeout time.Duration
	Log     *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Registry is the one lookup of API keys: the configuration's, then the
// store's, from a process cache. A known key costs no store round trip; a
// change made on any replica reaches every replica's cache through the
// store's change log within one Poll. It also administers the store's
// keys (admin.go).
type Registry struct {
	store Store
	opt   Options
	// conf is the configuration's keys, tiers and projects (opt's until
	// a Reconfigure).
	conf     atomic.Pointer[configured]
	projects atomic.Pointer[projectSet]
	// reload lets one lookup at a time read the projects again (knowProject).
	reload sync.Mutex

	mu      sync.RWMutex
	byHash  map[string]*Entry // digest → key (nil entry: unknown digest)
	hashOf  map[string]string // id → digest, to evict by id
	missing int               // nil entries held
	gen     uint64            // counts evictions: a fill that raced one is not cached

	mark  string // the change log mark read up to
	stop  chan struct{}
	done  sync.WaitGroup
	close sync.Once
}

// Entry is a cached key and its resolved identity.
type Entry struct {
	Key      *Key
	Identity *Identity
	used     atomic.Int64 // unix ms of the last use not yet written
}

// maxMissing bounds the cached unknown digests.
const maxMissing = 10_000

// NewRegistry starts a registry over store: it reads the change log from
// now on and writes last-use times in the background. A nil store holds
// only the configuration's keys. It fails only on a configuration key
// whose tier is unknown.
func NewRegistry(ctx context.Context, store Store, o Options) (*Registry, error) {
	if o.Tiers == nil {
		o.Tiers = quota.DefaultTiers
	}
	if o.KnownModel == nil {
		o.KnownModel = func(string) bool { return true }
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.TouchEvery <= 0 {
		o.TouchEvery = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Registry{store: store, opt: o, byHash: map[string]*Entry{}, hashOf: map[string]string{}, stop: make(chan struct{})}
	r.conf.Store(&configured{Static: o.Static, Tiers: o.Tiers, Projects: o.Projects})
	if err := r.loadProjects(ctx); err != nil {
		return nil, err
	}
	if store == nil {
		return r, nil
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	_, r.mark, _, _ = store.Changes(cctx, "") // "" on failure: read from the first poll that works
	cancel()
	r.done.Add(2)
	go r.watch()
	go r.toucher()
	return r, nil
}

// Authenticate returns the identity a secret belongs to: a configuration
// key's, or an active stored key's. It returns nil and no error for a
// secret that is neither; an error means the store could not tell.
func (r *Registry) Authenticate(ctx context.Context, secret string) (*Identity, error) {
	if id := r.projects.Load().static.lookup(secret); id != nil {
		return id, nil
	}
	e, err := r.Lookup(ctx, secret)
	if err != nil || e == nil {
		return nil, err
	}
	return e.Identity, nil
}

// Lookup returns the entry of an active key whose secret this is, or nil
// for a malformed, unknown, revoked or expired one. An error means the
// store could not tell.
func (r *Registry) Lookup(ctx context.Context, secret string) (*Entry, error) {
	if _, err := ParseSecret(secret); err != nil || r.store == nil {
		return nil, nil
	}
	digest := Digest(secret)
	r.mu.RLock()
	e, cached := r.byHash[digest]
	r.mu.RUnlock()
	if !cached {
		var err error
		if e, err = r.fill(ctx, digest); err != nil {
			return nil, err
		}
	}
	now := r.opt.Now()
	if e == nil || !e.Key.Active(now) {
		return nil, nil
	}
	if ms := now.UnixMilli(); ms-e.used.Load() >= 1000 {
		e.used.Store(ms)
	}
	return e, nil
}

// fill reads a digest's key from the store into the cache.
func (r *Registry) fill(ctx context.Context, digest string) (*Entry, error) {
	r.mu.RLock()
	gen := r.gen
	r.mu.RUnlock()
	cctx, cancel := context.WithTimeout(ctx, r.opt.Timeout)
	defer cancel()
	k, err := r.store.ByDigest(cctx, digest)
	var e *Entry
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	case k.RevokedAt != nil:
		e = &Entry{Key: k} // never used again: nothing to resolve
	default:
		r.knowProject(ctx, k.Project) // made on another replica a moment ago
		id, err := resolve(k, r.conf.Load().Tiers, r.projects.Load().all)
		if err != nil {
			return nil, fmt.Errorf("resolve key: %w", err)
		}
		e = &Entry{Key: k, Identity: id}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return e, nil // a change came in meanwhile; what was read may be older
	}
	if e == nil {
		if r.missing >= maxMissing {
			r.dropMissingLocked()
		}
		r.missing++
	} else {
		r.hashOf[e.Key.ID] = digest
	}
	r.byHash[digest] = e
	return e, nil
}

func (r *Registry) dropMissingLocked() {
	for d, e := range r.byHash {
		if e == nil {
			delete(r.byHash, d)
		}
	}
	r.missing = 0
}

// evict forgets keys by id, so that their next use reads the store.
func (r *Registry) evict(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	for _, id := range ids {
		if d, ok := r.hashOf[id]; ok {
			delete(r.byHash, d)
			delete(r.hashOf, id)
		}
	}
}

// reset forgets every key.
func (r *Registry) reset() {
	r.mu.Lock()
	r.byHash, r.hashOf, r.missing = map[string]*Entry{}, map[string]string{}, 0
	r.gen++
	r.mu.Unlock()
}

// watch reads the store's change log and evicts what changed. While the
// store cannot be read, cached keys stay in use (a store outage must not
// lock every customer out); on return, a gap in the log drops the cache.
func (r *Registry) watch() {
	defer r.done.Done()
	t := time.NewTicker(r.opt.Poll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.opt.Timeout)
		ids, next, reset, err := r.store.Changes(ctx, r.mark)
		cancel()
		if err != nil {
			if !failing {
				r.opt.Log.Warn("key changes cannot be read; cached keys stay in use until they can", "err", err)
				failing = true
			}
			continue
		}
		if failing {
			r.opt.Log.Info("key changes readable again")
			failing = false
		}
		switch {
		case reset || r.mark == "" || !r.projects.Load().loaded || slices.ContainsFunc(ids, isProjectChange):
			if !r.reloadProjects() {
				continue // read these changes again next time
			}
		case len(ids) > 0:
			r.evict(ids...)
		}
		r.mark = next
	}
}

func isProjectChange(id string) bool { return strings.HasPrefix(id, projectChange) }

// toucher writes last-use times now and then, not per request.
func (r *Registry) toucher() {
	defer r.done.Done()
	t := time.NewTicker(r.opt.TouchEvery)
	defer t.Stop()
	written := map[*Entry]int64{}
	for {
		var last bool
		select {
		case <-r.stop:
			last = true
		case <-t.C:
		}
		used := map[string]time.Time{}
		now := make(map[*Entry]int64, len(written)) // only the entries still cached
		r.mu.RLock()
		for _, e := range r.byHash {
			if e == nil {
				continue
			}
			ms := e.used.Load()
			if ms > written[e] {
				used[e.Key.ID] = time.UnixMilli(ms)
			}
			now[e] = ms
		}
		r.mu.RUnlock()
		written = now
		if len(used) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), r.opt.Timeout)
			if err := r.store.Touch(ctx, used); err != nil {
				r.opt.Log.Warn("key last-use times not written", "err", err)
			}
			cancel()
		}
		if last {
			return
		}
	}
}

// Close stops the background work, writing last-use times once more.
func (r *Registry) Close() {
	r.close.Do(func() { close(r.stop) })
	r.done.Wait()
}
