package keys

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/money"
)

// TestProjectStore: a stored project comes back whole from each store,
// keys resolve against it, and it can be neither made twice nor deleted
// while a key belongs to it; the configuration's cannot be changed.
func TestProjectStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		cfg := Projects{"acme": {ID: "acme", Config: true, Limits: Limits{RPM: int64p(5)}}}
		r := newRegistry(t, st, Options{Projects: cfg})
		p := &Project{ID: "beta", Name: "Beta", Limits: Limits{TPM: int64p(900)},
			Budget: &Budget{Monthly: 2 * money.PerDollar, AlertAt: []float64{0.5, 1}}, Metadata: map[string]string{"team": "x"}}
		if err := r.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := r.CreateProject(ctx, &Project{ID: "beta"}); !errors.Is(err, ErrExists) {
			t.Errorf("beta twice: %v", err)
		}
		if err := r.CreateProject(ctx, &Project{ID: "acme"}); !errors.Is(err, ErrExists) {
			t.Errorf("a project of the configuration's id: %v", err)
		}
		if _, err := r.UpdateProject(ctx, "acme", func(*Project) error { return nil }); !errors.Is(err, ErrConfigured) {
			t.Errorf("changed the configuration's project: %v", err)
		}
		if err := r.CreateProject(ctx, &Project{ID: "Bad id"}); err == nil {
			t.Error("a bad id was taken")
		}
		// A second registry over the store reads it back whole.
		again := newRegistry(t, st, Options{Projects: cfg})
		got, ok := again.Project("beta")
		if !ok || got.Name != "Beta" || *got.Limits.TPM != 900 || got.Budget.Monthly != 2*money.PerDollar ||
			!slices.Equal(got.Budget.AlertAt, []float64{0.5, 1}) || got.Metadata["team"] != "x" || got.CreatedAt.IsZero() {
			t.Fatalf("read back %+v %+v", got, got.Budget)
		}
		k, secret, err := r.Create(ctx, Spec{Tier: "free", Project: "beta", Budget: &Budget{Monthly: money.PerDollar}})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := r.Authenticate(ctx, secret)
		if id == nil || id.ProjectLimits.TPM != 900 || id.ProjectLimits.Budget != int64(2*money.PerDollar) ||
			id.Limits.Budget != int64(money.PerDollar) || !slices.Equal(id.Alerts, DefaultAlertAt) || !slices.Equal(id.ProjectAlerts, []float64{0.5, 1}) {
			t.Fatalf("the key resolved to %+v", id)
		}
		if err := r.DeleteProject(ctx, "beta"); !errors.Is(err, ErrInUse) {
			t.Errorf("deleted a project with a key: %v", err)
		}
		if _, err := r.Revoke(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteProject(ctx, "beta"); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Project("beta"); ok {
			t.Error("beta is still there")
		}
		if id, err := r.Authenticate(ctx, secret); id != nil || err != nil {
			t.Errorf("the revoked key of a deleted project: %v %v", id, err)
		}
	})
}

// TestProjectChangeReachesReplicas: a budget raised on one replica is
// what another's keys resolve to within its poll.
func TestProjectChangeReachesReplicas(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	ctx := context.Background()
	a := newRegistry(t, NewPostgres(pool), Options{})
	b := newRegistry(t, NewPostgres(pool), Options{})
	if err := a.CreateProject(ctx, &Project{ID: "gamma", Budget: &Budget{Monthly: 1}}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.Create(ctx, Spec{Tier: "free", Project: "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to know the key of the new project", func() bool {
		id, _ := b.Authenticate(ctx, secret)
		return id != nil && id.ProjectLimits.Budget == 1
	})
	if _, err := a.UpdateProject(ctx, "gamma", func(p *Project) error { p.Budget.Monthly = 500; return nil }); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to see the raise", func() bool {
		id, _ := b.Authenticate(ctx, secret)
		return id != nil && id.ProjectLimits.Budget == 500
	})
}

// TestConfigKeyBudget: a configuration key's own budget and its
// configuration project's resolve into its identity, thresholds
// defaulted; the admin API lists it read-only.
func TestConfigKeyBudget(t *testing.T) {
	ctx := context.Background()
	secret := "sk-config-budget-0123456789"
	r := newRegistry(t, nil, Options{
		Static:   []Static{{ID: "key_cfg", Tier: "pro", SHA256: sha256.Sum256([]byte(secret)), Project: "acme", Budget: &Budget{Monthly: 2 * money.PerDollar, AlertAt: []float64{0.9}}}},
		Projects: Projects{"acme": {ID: "acme", Config: true, Budget: &Budget{Monthly: 5 * money.PerDollar}}},
	})
	id, err := r.Authenticate(ctx, secret)
	if err != nil || id == nil {
		t.Fatal(id, err)
	}
	sub := id.Subject()
	if id.Limits.Budget != int64(2*money.PerDollar) || !slices.Equal(id.Alerts, []float64{0.9}) ||
		id.ProjectLimits.Budget != int64(5*money.PerDollar) || !slices.Equal(id.ProjectAlerts, DefaultAlertAt) ||
		sub.Limits.Budget != id.Limits.Budget || sub.ProjectLimits.Budget != id.ProjectLimits.Budget || sub.Project != "acme" {
		t.Errorf("identity %+v, subject %+v", id, sub)
	}
	k, err := r.Get(ctx, "key_cfg")
	if err != nil || !k.Config || k.Budget.Monthly != 2*money.PerDollar {
		t.Errorf("Get: %+v %v", k, err)
	}
	if _, err := r.Update(ctx, "key_cfg", func(*Key) error { return nil }); !errors.Is(err, ErrConfigured) {
		t.Errorf("a configuration key was changed: %v", err)
	}
}

// flakyProjects is a real store whose project list fails on demand.
type flakyProjects struct {
	Store
	fail atomic.Bool
}

func (f *flakyProjects) ListProjects(ctx context.Context) ([]*Project, error) {
	if f.fail.Load() {
		return nil, errors.New("projects unreadable")
	}
	return f.Store.ListProjects(ctx)
}

// TestProjectsKeptWhenUnreadable: while the stored projects cannot be
// read again, the keys of a stored project keep resolving against the
// last read, and a change made meanwhile is applied once they can.
func TestProjectsKeptWhenUnreadable(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	ctx := context.Background()
	a := newRegistry(t, NewPostgres(pool), Options{})
	st := &flakyProjects{Store: NewPostgres(pool)}
	b := newRegistry(t, st, Options{})
	if err := a.CreateProject(ctx, &Project{ID: "delta", Budget: &Budget{Monthly: 7}}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.Create(ctx, Spec{Tier: "free", Project: "delta"})
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to know the key", func() bool {
		id, _ := b.Authenticate(ctx, secret)
		return id != nil && id.ProjectLimits.Budget == 7
	})
	st.fail.Store(true)
	if _, err := a.UpdateProject(ctx, "delta", func(p *Project) error { p.Budget.Monthly = 9; return nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // several polls that cannot read the projects
	if id, err := b.Authenticate(ctx, secret); id == nil || err != nil || id.ProjectLimits.Budget != 7 {
		t.Fatalf("while unreadable: %+v %v", id, err)
	}
	st.fail.Store(false)
	poll.Until(t, "b to see the change", func() bool {
		id, _ := b.Authenticate(ctx, secret)
		return id != nil && id.ProjectLimits.Budget == 9
	})
}

// TestProjectMadeElsewhereAtOnce: a project made on one replica is known
// at once on another, long before its change log reader would see it:
// a key can be made in it there, read, and used, and the project read
// and changed there.
func TestProjectMadeElsewhereAtOnce(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	ctx := context.Background()
	a := newRegistry(t, NewPostgres(pool), Options{Poll: time.Hour})
	b := newRegistry(t, NewPostgres(pool), Options{Poll: time.Hour})
	if err := a.CreateProject(ctx, &Project{ID: "delta", Limits: Limits{RPM: int64p(7)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Create(ctx, Spec{Tier: "free", Project: "delta"}); err != nil {
		t.Fatalf("a key in it made on b: %v", err)
	}
	if err := a.CreateProject(ctx, &Project{ID: "epsilon", Limits: Limits{RPM: int64p(8)}}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.Create(ctx, Spec{Tier: "free", Project: "epsilon"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := b.Authenticate(ctx, secret); err != nil || id == nil || id.ProjectLimits.RPM != 8 {
		t.Fatalf("a key of a project made on a, used on b: %+v %v", id, err)
	}
	if err := a.CreateProject(ctx, &Project{ID: "zeta"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Project("zeta"); !ok {
		t.Error("a project made on a, read on b: not found")
	}
	if err := a.CreateProject(ctx, &Project{ID: "eta"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateProject(ctx, "eta", func(p *Project) error { p.Name = "Eta"; return nil }); err != nil {
		t.Errorf("a project made on a, changed on b: %v", err)
	}
}
