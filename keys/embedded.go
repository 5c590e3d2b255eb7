package keys

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	keysBucket    = []byte("keys")        // id → record (JSON)
	digestsBucket = []byte("keys_digest") // hex SHA-256 → id
	usedBucket    = []byte("keys_used")   // id → unix ms of last use
)

// Embedded keeps keys in the single replica's bbolt file. With one
// process there is no one else to tell of a change: Changes reports none.
type Embedded struct {
	db *bolt.DB
}

// OpenEmbedded prepares the key buckets in db.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{keysBucket, digestsBucket, usedBucket, projectsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded keys: %w", err)
	}
	return &Embedded{db: db}, nil
}

func (e *Embedded) Create(_ context.Context, k *Key) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		keys, digests := tx.Bucket(keysBucket), tx.Bucket(digestsBucket)
		if keys.Get([]byte(k.ID)) != nil || digests.Get([]byte(k.Hash)) != nil {
			return ErrExists
		}
		if err := keys.Put([]byte(k.ID), b); err != nil {
			return err
		}
		return digests.Put([]byte(k.Hash), []byte(k.ID))
	})
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	return nil
}

// Delete removes the key with id and digest, if it is there.
func (e *Embedded) Delete(_ context.Context, id, digest string) error {
	err := e.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(keysBucket).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(digestsBucket).Delete([]byte(digest))
	})
	if err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}

func (e *Embedded) Update(_ context.Context, k *Key) error {
	stored := *k
	stored.LastUsedAt = nil
	b, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		if keys.Get([]byte(k.ID)) == nil {
			return ErrNotFound
		}
		return keys.Put([]byte(k.ID), b)
	})
	if err != nil {
		return fmt.Errorf("update key %s: %w", k.ID, err)
	}
	return nil
}

func (e *Embedded) Get(_ context.Context, id string) (*Key, error) {
	var k *Key
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = e.get(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	return k, nil
}

func (e *Embedded) get(tx *bolt.Tx, id string) (*Key, error) {
	v := tx.Bucket(keysBucket).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	k, err := decodeKey(string(v))
	if err != nil {
		return nil, err
	}
	if u := tx.Bucket(usedBucket).Get([]byte(id)); len(u) == 8 {
		t := time.UnixMilli(int64(binary.BigEndian.Uint64(u))).UTC()
		k.LastUsedAt = &t
	}
	return k, nil
}

func (e *Embedded) ByDigest(_ context.Context, digest string) (*Key, error) {
	var k *Key
	err := e.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(digestsBucket).Get([]byte(digest))
		if id == nil {
			return ErrNotFound
		}
		var err error
		k, err = e.get(tx, string(id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("key by digest: %w", err)
	}
	return k, nil
}

func (e *Embedded) List(_ context.Context) ([]*Key, error) {
	var out []*Key
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(keysBucket).ForEach(func(id, _ []byte) error {
			k, err := e.get(tx, string(id))
			if err == nil {
				out = append(out, k)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	sortKeys(out)
	return out, nil
}

// Changes reports none: this process made every change, and its
// Registry applied each as it made it. The mark is never "" (which would
// mean "read from now" and make the Registry start over every poll).
func (e *Embedded) Changes(context.Context, string) ([]string, string, bool, error) {
	return nil, "embedded", false, nil
}

func (e *Embedded) Touch(_ context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(usedBucket)
		for id, t := range used {
			if cur := b.Get([]byte(id)); len(cur) == 8 && int64(binary.BigEndian.Uint64(cur)) >= t.UnixMilli() {
				continue
			}
			if err := b.Put([]byte(id), binary.BigEndian.AppendUint64(nil, uint64(t.UnixMilli()))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch %d keys: %w", len(used), err)
	}
	return nil
}

func decodeKey(s string) (*Key, error) {
	var k Key
	if err := json.Unmarshal([]byte(s), &k); err != nil || k.ID == "" {
		return nil, fmt.Errorf("bad key record: %w", errors.Join(err, ErrNotFound))
	}
	return &k, nil
}

// sortKeys orders keys oldest first, as List promises.
func sortKeys(ks []*Key) {
	sort.Slice(ks, func(i, j int) bool {
		if !ks[i].CreatedAt.Equal(ks[j].CreatedAt) {
			return ks[i].CreatedAt.Before(ks[j].CreatedAt)
		}
		return ks[i].ID < ks[j].ID
	})
}
