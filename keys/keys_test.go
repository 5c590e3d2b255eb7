package keys

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/pgdb"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/quota"
)

// forEachStore runs f against real Redis and the embedded store.
func forEachStore(t *testing.T, f func(t *testing.T, st Store)) {
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgtest.Shared(t)
		f(t, NewPostgres(pool))
	})
	t.Run("embedded", func(t *testing.T) {
		e, err := OpenEmbedded(bolttest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		f(t, e)
	})
}

func TestSecretFormat(t *testing.T) {
	id, secret := newSecret()
	if !regexp.MustCompile(`^sk-obol-[0-9A-HJKMNP-TV-Z]{10}_[0-9A-HJKMNP-TV-Z]{58}$`).MatchString(secret) {
		t.Errorf("secret %q", secret)
	}
	got, err := ParseSecret(secret)
	if err != nil || got != id || !strings.HasPrefix(id, "key_") || id[4:] != secret[8:18] {
		t.Errorf("ParseSecret: %q, %v; id %q", got, err, id)
	}
	// One character changed anywhere is caught by the checksum.
	for _, i := range []int{9, 20, len(secret) - 1} {
		b := []byte(secret)
		b[i] = map[bool]byte{true: 'A', false: 'B'}[b[i] != 'A']
		if _, err := ParseSecret(string(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("a typo at %d passed: %v", i, err)
		}
	}
	for _, bad := range []string{"", "sk-demo-free-4f1c9a", secret[:len(secret)-1], secret + "0"} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if p := prefixOf(secret); p != secret[:18]+"…" {
		t.Errorf("prefix %q", p)
	}
}

func newRegistry(t *testing.T, st Store, o Options) *Registry {
	if o.Poll == 0 {
		o.Poll = 20 * time.Millisecond
	}
	r, err := NewRegistry(context.Background(), st, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func int64p(v int64) *int64 { return &v }

func TestStoreRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		r := newRegistry(t, st, Options{})
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		k, secret, err := r.Create(ctx, Spec{Name: "acme", Tier: "pro", Models: []string{"hermes"},
			Limits: Limits{TPM: int64p(1000)}, ExpiresAt: &exp, Metadata: map[string]string{"customer": "acme"}})
		if err != nil {
			t.Fatal(err)
		}
		if k.Hash != Digest(secret) || strings.Contains(k.Prefix, secret[18:]) || len(k.Scopes) != 3 {
			t.Errorf("created %+v", k)
		}
		got, err := st.Get(ctx, k.ID)
		if err != nil || got.Name != "acme" || *got.Limits.TPM != 1000 || got.Limits.RPM != nil || !got.ExpiresAt.Equal(exp) || got.Metadata["customer"] != "acme" {
			t.Errorf("get: %+v, %v", got, err)
		}
		if got, err := st.ByDigest(ctx, Digest(secret)); err != nil || got.ID != k.ID {
			t.Errorf("by digest: %+v, %v", got, err)
		}
		if _, err := st.ByDigest(ctx, Digest("sk-nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown digest: %v", err)
		}
		if _, err := st.Get(ctx, "key_NOPE"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		if err := st.Create(ctx, k); !errors.Is(err, ErrExists) {
			t.Errorf("create twice: %v", err)
		}
		k2, _, _ := r.Create(ctx, Spec{Name: "second", Tier: "free"})
		up, err := r.Update(ctx, k2.ID, func(k *Key) error { k.Tier = "team"; return nil })
		if err != nil || up.Tier != "team" {
			t.Fatalf("update: %+v, %v", up, err)
		}
		if _, err := r.Update(ctx, "key_NOPE", func(*Key) error { return nil }); !errors.Is(err, ErrNotFound) {
			t.Errorf("update unknown: %v", err)
		}
		used := time.Now().UTC().Truncate(time.Millisecond)
		if err := st.Touch(ctx, map[string]time.Time{k.ID: used}); err != nil {
			t.Fatal(err)
		}
		st.Touch(ctx, map[string]time.Time{k.ID: used.Add(-time.Hour)}) // older: ignored
		list, err := st.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %v, %v", list, err)
		}
		if list[0].ID != k.ID {
			list[0], list[1] = list[1], list[0] // created in the same millisecond
		}
		if list[0].ID != k.ID || list[1].Tier != "team" {
			t.Errorf("list: %+v, %+v", list[0], list[1])
		}
		if list[0].LastUsedAt == nil || !list[0].LastUsedAt.Equal(used) || list[1].LastUsedAt != nil {
			t.Errorf("last used: %v, %v", list[0].LastUsedAt, list[1].LastUsedAt)
		}
	})
}

// counting counts the store reads of a Store.
type counting struct {
	Store
	reads atomic.Int64
}

func (c *counting) ByDigest(ctx context.Context, d string) (*Key, error) {
	c.reads.Add(1)
	return c.Store.ByDigest(ctx, d)
}

func TestLookup(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		cs := &counting{Store: st}
		now := time.Now()
		clock := func() time.Time { return now }
		r := newRegistry(t, cs, Options{Now: clock, Tiers: quota.Tiers{"free": {RPM: 7}}})
		k, secret, _ := r.Create(ctx, Spec{Name: "a", Tier: "free"})
		for i := 0; i < 5; i++ {
			e, err := r.Lookup(ctx, secret)
			if err != nil || e == nil || e.Key.ID != k.ID || e.Identity.Name != "a" || e.Identity.Limits.RPM != 7 {
				t.Fatalf("lookup: %+v, %v", e, err)
			}
		}
		if n := cs.reads.Load(); n != 1 {
			t.Errorf("%d store reads for five lookups of one key, want 1", n)
		}
		// Malformed secrets are refused without a read; a well-formed
		// unknown one is read once, then remembered as unknown.
		for _, s := range []string{"", "sk-obol-nope", "sk-demo-free-4f1c9a"} {
			if e, err := r.Lookup(ctx, s); e != nil || err != nil {
				t.Errorf("%q: %v, %v", s, e, err)
			}
		}
		_, unknown := newSecret()
		r.Lookup(ctx, unknown)
		r.Lookup(ctx, unknown)
		if n := cs.reads.Load(); n != 2 {
			t.Errorf("%d store reads, want 2", n)
		}
		// Revoked: refused at once on this replica.
		if _, err := r.Revoke(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if e, _ := r.Lookup(ctx, secret); e != nil {
			t.Error("a revoked key was accepted")
		}
		// Expired: refused by the clock alone.
		exp := now.Add(time.Minute)
		_, s2, _ := r.Create(ctx, Spec{Name: "b", Tier: "free", ExpiresAt: &exp})
		if e, _ := r.Lookup(ctx, s2); e == nil {
			t.Fatal("a key before its expiry was refused")
		}
		now = now.Add(2 * time.Minute)
		if e, _ := r.Lookup(ctx, s2); e != nil {
			t.Error("an expired key was accepted")
		}
	})
}

// TestRevocationReachesReplicas: two registries on one Redis, each with
// the key cached; a revocation through one is seen by the other within
// its poll, with no request needed to learn of it.
func TestRevocationReachesReplicas(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	ctx := context.Background()
	a := newRegistry(t, NewPostgres(pool), Options{})
	b := newRegistry(t, NewPostgres(pool), Options{})
	k, secret, err := a.Create(ctx, Spec{Name: "k", Tier: "free"})
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := b.Lookup(ctx, secret); e == nil || e.Key.Tier != "free" {
		t.Fatal("replica b does not know the new key")
	}
	if _, err := a.Update(ctx, k.ID, func(k *Key) error { k.Tier = "pro"; return nil }); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to see the tier change", func() bool {
		e, _ := b.Lookup(ctx, secret)
		return e != nil && e.Key.Tier == "pro"
	})
	if _, err := a.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	poll.Until(t, "b to refuse the revoked key", func() bool {
		e, _ := b.Lookup(ctx, secret)
		return e == nil
	})
	t.Logf("revocation seen by the other replica after %s (poll %s)", time.Since(start).Round(time.Millisecond), 20*time.Millisecond)
}

func TestValidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		r := newRegistry(t, st, Options{Tiers: quota.Tiers{"free": {}}})
		ctx := context.Background()
		tests := []struct {
			spec  Spec
			field string
		}{
			{Spec{Tier: "gold"}, "tier"},
			{Spec{Tier: "free", Scopes: []string{"admin"}}, "scopes"},
			{Spec{Tier: "free", Limits: Limits{RPM: int64p(-1)}}, "limits.rpm"},
			{Spec{Tier: "free", Name: strings.Repeat("n", 201)}, "name"},
		}
		for _, tt := range tests {
			_, _, err := r.Create(ctx, tt.spec)
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Field != tt.field {
				t.Errorf("%+v: %v, want an error on %s", tt.spec, err, tt.field)
			}
		}
		if list, _ := st.List(ctx); len(list) != 0 {
			t.Errorf("refused specs were stored: %v", list)
		}
	})
}

// TestFailedCreateUndone: a create that the store does not answer in
// time answers an error, and its key is removed (and tombstoned) once the
// store answers: nothing is left behind whose secret was never shown, and
// the create cannot land late.
func TestFailedCreateUndone(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	st := NewPostgres(pool)
	r := newRegistry(t, st, Options{Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	// Another session holds the key-change lock: the create waits past
	// its timeout, its outcome unknown to the registry.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", changeLock); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, _, err = r.Create(cctx, Spec{Name: "stalled", Tier: "free"})
	cancel()
	tx.Rollback(ctx)
	if err == nil {
		t.Fatal("a create into a stalled store succeeded")
	}
	var id string
	poll.Until(t, "the failed create to be undone", func() bool {
		return pool.QueryRow(ctx, "SELECT id FROM api_key_tombstones").Scan(&id) == nil
	})
	if list, _ := st.List(ctx); len(list) != 0 {
		t.Errorf("a failed create left %d keys", len(list))
	}
	if err := st.Create(ctx, &Key{ID: id, Hash: "late", Tier: "free", CreatedAt: time.Now()}); !errors.Is(err, ErrExists) {
		t.Errorf("a late create of the undone key: %v", err)
	}
}

// TestRevocationAcrossReplicasAndPartition: three replicas on one
// PostgreSQL; a revocation reaches the two connected ones within their
// poll, and the one cut off from the database while it happened refuses
// the key once it reaches the database again (it kept serving its cache
// meanwhile).
func TestRevocationAcrossReplicasAndPartition(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Migrated(t)
	proxy := pgtest.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.Port))
	ctx := context.Background()
	open := func(url string) *Registry {
		pool, err := pgdb.Open(ctx, url, pgdb.Options{ConnectTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return newRegistry(t, NewPostgres(pool), Options{Timeout: 300 * time.Millisecond})
	}
	a, b := open(srv.URL()), open(srv.URL())
	c := open(strings.Replace(srv.URL(), fmt.Sprintf(":%d", srv.Port), ":"+strings.Split(proxy.Addr(), ":")[1], 1))
	k, secret, err := a.Create(ctx, Spec{Name: "k", Tier: "free"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Registry{a, b, c} {
		if e, err := r.Lookup(ctx, secret); e == nil || err != nil {
			t.Fatalf("a replica does not know the new key: %v", err)
		}
	}
	proxy.Cut()
	if _, err := a.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to refuse the revoked key", func() bool { e, _ := b.Lookup(ctx, secret); return e == nil })
	if e, _ := c.Lookup(ctx, secret); e == nil {
		t.Fatal("the cut-off replica dropped its cached key while it could not reach the database")
	}
	proxy.Restore()
	poll.Until(t, "the cut-off replica to refuse the revoked key once back", func() bool { e, _ := c.Lookup(ctx, secret); return e == nil })
}

// TestCheckAdminToken: tokens easy to guess are refused, saying how to
// make one; what openssl makes is taken.
func TestCheckAdminToken(t *testing.T) {
	for tok, ok := range map[string]bool{
		"short": false, "aaaaaaaaaaaaaaaa": false, "abababababababababababababababab": false,
		"0123456789abcdef":              false, // 16 hex characters: 83 bits
		"demo-admin-token-not-a-secret": true, "3f9c1e7a5b2d8046c1e9f7a3b5d2086e4c1a9f7e3b5d2c80f6a4e2c9b7d1f305": true,
		"pQ7vX2mR9tK4wL8zN3bH6jF1": true,
	} {
		err := CheckAdminToken(tok)
		if (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("%q: %v, want ok %v", tok, err, ok)
		}
	}
}

func ExampleLimits_Over() {
	rpm, unlimited := int64(5), int64(0)
	fmt.Println(Limits{RPM: &rpm, TPD: &unlimited}.Over(quota.DefaultTiers["free"]))
	// Output: {5 40000 0 0 0 false}
}
