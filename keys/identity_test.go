package keys

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/obol/obol/quota"
)

// TestStaticAndStored: configuration keys and stored keys come out of
// one lookup as the same Identity, with one scope rule: a configuration
// key that names no scopes has all of them; a stored key has exactly the
// scopes it lists, so an empty list allows nothing.
func TestStaticAndStored(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		rpm := int64(3)
		r := newRegistry(t, st, Options{
			Tiers: quota.Tiers{"free": {RPM: 20, TPM: 100}},
			Static: []Static{
				{ID: "cfg_all", Tier: "free", SHA256: sha256.Sum256([]byte("sk-config-all")), Limits: Limits{RPM: &rpm}},
				{ID: "cfg_usage", Tier: "free", SHA256: sha256.Sum256([]byte("sk-config-usage")), Scopes: []string{ScopeUsage}},
			},
		})
		_, secret, err := r.Create(ctx, Spec{Tier: "free", Scopes: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			secret   string
			id       string
			limits   quota.Limits
			has, not []string
		}{
			{"sk-config-all", "cfg_all", quota.Limits{RPM: 3, TPM: 100}, AllScopes, nil},
			{"sk-config-usage", "cfg_usage", quota.Limits{RPM: 20, TPM: 100}, []string{ScopeUsage}, []string{ScopeChat, ScopeModels}},
			{secret, "", quota.Limits{RPM: 20, TPM: 100}, nil, AllScopes},
		}
		for _, tt := range tests {
			id, err := r.Authenticate(ctx, tt.secret)
			if err != nil || id == nil || (tt.id != "" && id.ID != tt.id) || id.Limits != tt.limits {
				t.Fatalf("%s: %+v, %v", tt.secret, id, err)
			}
			for _, s := range tt.has {
				if !id.Has(s) {
					t.Errorf("%s lacks %s", tt.id, s)
				}
			}
			for _, s := range tt.not {
				if id.Has(s) {
					t.Errorf("%s has %s", tt.id, s)
				}
			}
		}
		if id, err := r.Authenticate(ctx, "sk-config-none"); id != nil || err != nil {
			t.Errorf("unknown secret: %+v, %v", id, err)
		}
		// A stored key may not take a configuration key's id.
		_, err = r.Update(ctx, "cfg_all", func(*Key) error { return nil })
		if err == nil {
			t.Error("a configuration key was updated in the store")
		}
		var ie *InvalidError
		k := &Key{ID: "cfg_all", Tier: "free"}
		if err := r.check(k); !errors.As(err, &ie) || ie.Field != "id" {
			t.Errorf("check of a configuration id: %v", err)
		}
	})
}

// TestUnknownStaticTier: a configuration key of a tier that is not
// configured is refused at start rather than left unlimited.
func TestUnknownStaticTier(t *testing.T) {
	_, err := NewRegistry(context.Background(), nil, Options{Tiers: quota.Tiers{"free": {}},
		Static: []Static{{ID: "k", Tier: "gold"}}})
	if err == nil {
		t.Fatal("a key of an unknown tier was accepted")
	}
}
