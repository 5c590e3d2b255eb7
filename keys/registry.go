package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Registry.
type Options struct {
	// Resolve turns a key into what Lookup hands the caller (the gateway's
	// view, limits resolved); it runs once per key per cache fill.
	Resolve func(*Key) (any, error)
	// Validate checks a key before it is created or changed (its tier,
	// models): its error is the caller's to show.
	Validate func(*Key) error
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

// Registry authenticates secrets from a process cache and administers
// keys in a Store. A known key costs no store round trip; a change made
// on any replica reaches every replica's cache through the store's change
// log within one Poll.
type Registry struct {
	store Store
	opt   Options

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

// Entry is a cached key and its resolved view.
type Entry struct {
	Key  *Key
	View any
	used atomic.Int64 // unix ms of the last use not yet written
}

// maxMissing bounds the cached unknown digests.
const maxMissing = 10_000

// NewRegistry starts a registry over store: it reads the change log from
// now on and writes last-use times in the background.
func NewRegistry(ctx context.Context, store Store, o Options) *Registry {
	if o.Resolve == nil {
		o.Resolve = func(k *Key) (any, error) { return k, nil }
	}
	if o.Validate == nil {
		o.Validate = func(*Key) error { return nil }
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
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	_, r.mark, _, _ = store.Changes(cctx, "") // "" on failure: read from the first poll that works
	cancel()
	r.done.Add(2)
	go r.watch()
	go r.toucher()
	return r
}

// Lookup returns the entry of an active key whose secret this is, or nil
// for a malformed, unknown, revoked or expired one. An error means the
// store could not tell.
func (r *Registry) Lookup(ctx context.Context, secret string) (*Entry, error) {
	if _, err := ParseSecret(secret); err != nil {
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
	default:
		view, err := r.opt.Resolve(k)
		if err != nil {
			return nil, fmt.Errorf("resolve key %s: %w", k.ID, err)
		}
		e = &Entry{Key: k, View: view}
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
		if reset || r.mark == "" {
			r.reset()
		} else if len(ids) > 0 {
			r.evict(ids...)
		}
		r.mark = next
	}
}

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

// Spec is what an operator asks for in a new key.
type Spec struct {
	Name      string
	Tier      string
	Models    []string
	Limits    Limits
	Scopes    []string // nil: DefaultScopes
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
			ID: id, Name: s.Name, Tier: s.Tier, Models: s.Models, Limits: s.Limits, Scopes: scopes,
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
			return nil, "", err
		}
		return k, secret, nil
	}
}

// Get returns the key with id.
func (r *Registry) Get(ctx context.Context, id string) (*Key, error) { return r.store.Get(ctx, id) }

// List returns every key.
func (r *Registry) List(ctx context.Context) ([]*Key, error) { return r.store.List(ctx) }

// Update applies change to the key with id and stores it; every replica
// drops the old version within one Poll, this one at once.
func (r *Registry) Update(ctx context.Context, id string, change func(*Key) error) (*Key, error) {
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
	for name, l := range map[string]*int64{"rpm": k.Limits.RPM, "tpm": k.Limits.TPM, "tpd": k.Limits.TPD} {
		if l != nil && *l < 0 {
			return &InvalidError{Field: "limits." + name, Msg: "a limit is a whole number ≥ 0 (0 is unlimited)"}
		}
	}
	if len(k.Name) > 200 {
		return &InvalidError{Field: "name", Msg: "a name is at most 200 bytes"}
	}
	if len(k.Metadata) > 16 {
		return &InvalidError{Field: "metadata", Msg: "at most 16 metadata entries"}
	}
	for n, v := range k.Metadata {
		if len(n) > 64 || len(v) > 512 {
			return &InvalidError{Field: "metadata", Msg: "metadata names are at most 64 bytes, values 512"}
		}
	}
	return r.opt.Validate(k)
}

// InvalidError is a key spec or change the registry refuses.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }
