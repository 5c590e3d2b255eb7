package keys

import (
	"context"
	"errors"
	"time"
)

// Store keeps key records: Postgres (several replicas) or Embedded.
type Store interface {
	// Create adds k; ErrExists if its id or secret digest is taken.
	Create(ctx context.Context, k *Key) error
	// Delete removes the key with id and secret digest, if it is there:
	// only to undo a Create whose outcome is unknown.
	Delete(ctx context.Context, id, digest string) error
	// Update replaces an existing key's record; ErrNotFound if none.
	Update(ctx context.Context, k *Key) error
	// Get returns the key with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Key, error)
	// ByDigest returns the key whose secret has this hex SHA-256, or
	// ErrNotFound.
	ByDigest(ctx context.Context, digest string) (*Key, error)
	// List returns every key, oldest first.
	List(ctx context.Context) ([]*Key, error)
	// Changes returns the ids of keys changed after the change mark since
	// ("" is now: nothing), and the mark to ask from next. reset means
	// changes may have been missed and every cached key must go.
	Changes(ctx context.Context, since string) (ids []string, next string, reset bool, err error)
	// Touch records when keys were last used; a later time wins.
	Touch(ctx context.Context, used map[string]time.Time) error

	// ListProjects returns the stored projects.
	ListProjects(ctx context.Context) ([]*Project, error)
	// CreateProject adds p; ErrExists if its id is taken.
	CreateProject(ctx context.Context, p *Project) error
	// UpdateProject replaces a stored project; ErrNotFound if none.
	UpdateProject(ctx context.Context, p *Project) error
	// DeleteProject removes a stored project; ErrNotFound if none.
	DeleteProject(ctx context.Context, id string) error
}

// projectChange is how a project's change appears in the change log,
// beside keys' ids: every key of the project must be resolved again.
const projectChange = "project:"

var (
	// ErrNotFound is a key id that does not exist.
	ErrNotFound = errors.New("no such key")
	// ErrExists is a key id or secret that is taken already.
	ErrExists = errors.New("key exists")
	// ErrInUse is a project that keys still belong to.
	ErrInUse = errors.New("project in use")
)
