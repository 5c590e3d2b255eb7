package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Embedded keeps deliveries in the single replica's bbolt file.
type Embedded struct{ db *bolt.DB }

var claimsBucket = []byte("alert_deliveries") // event id → record (JSON)

// OpenEmbedded prepares the deliveries bucket in db.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(claimsBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded alert deliveries: %w", err)
	}
	return &Embedded{db: db}, nil
}

// record is a delivery as the bucket keeps it. Rows written before the
// outbox (no state) read as delivered when they were, else as failed.
type record struct {
	Alert       Alert      `json:"alert"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	LastError   string     `json:"last_error,omitempty"`
	DeliveredTo []string   `json:"delivered_to,omitempty"`
	ClaimedAt   time.Time  `json:"claimed_at"`
	NextAt      time.Time  `json:"next_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	FailedAt    *time.Time `json:"failed_at,omitempty"`
}

func (r record) delivery() Delivery {
	d := Delivery{Alert: r.Alert, State: r.State, Attempts: r.Attempts, LastError: r.LastError, DeliveredTo: r.DeliveredTo,
		ClaimedAt: r.ClaimedAt, NextAt: r.NextAt, DeliveredAt: r.DeliveredAt, FailedAt: r.FailedAt}
	switch {
	case d.State != "":
	case d.DeliveredAt != nil:
		d.State = Delivered
	case d.Attempts > 0:
		d.State = Failed
	default:
		d.State = Pending
	}
	return d
}

func recordOf(d Delivery) record {
	return record{Alert: d.Alert, State: d.State, Attempts: d.Attempts, LastError: d.LastError, DeliveredTo: d.DeliveredTo,
		ClaimedAt: d.ClaimedAt, NextAt: d.NextAt, DeliveredAt: d.DeliveredAt, FailedAt: d.FailedAt}
}

func put(b *bolt.Bucket, d Delivery) error {
	v, _ := json.Marshal(recordOf(d))
	return b.Put([]byte(d.ID), v)
}

func (e *Embedded) Claim(_ context.Context, a Alert) (bool, error) {
	won := false
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		if b.Get([]byte(a.ID)) != nil {
			return nil
		}
		won = true
		now := time.Now().UTC()
		return put(b, Delivery{Alert: a, State: Pending, ClaimedAt: now, NextAt: now})
	})
	if err != nil {
		return false, fmt.Errorf("record alert %s: %w", a.ID, err)
	}
	return won, nil
}

func (e *Embedded) Due(_ context.Context, now, lease time.Time, limit int) ([]Delivery, error) {
	var out []Delivery
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		var due []Delivery
		b.ForEach(func(_, v []byte) error {
			var r record
			if json.Unmarshal(v, &r) == nil {
				if d := r.delivery(); d.State == Pending && !d.NextAt.After(now) {
					due = append(due, d)
				}
			}
			return nil
		})
		sort.Slice(due, func(i, j int) bool { return due[i].NextAt.Before(due[j].NextAt) })
		for _, d := range due[:min(len(due), limit)] {
			leased := d
			leased.NextAt = lease
			if err := put(b, leased); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("due alerts: %w", err)
	}
	return out, nil
}

func (e *Embedded) Record(_ context.Context, d Delivery) error {
	err := e.db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(claimsBucket), d) })
	if err != nil {
		return fmt.Errorf("record alert %s: %w", d.ID, err)
	}
	return nil
}

func (e *Embedded) List(_ context.Context, f Filter) ([]Delivery, error) {
	var out []Delivery
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(claimsBucket).ForEach(func(_, v []byte) error {
			var r record
			if json.Unmarshal(v, &r) != nil {
				return nil
			}
			d := r.delivery()
			if (f.Subject == "" || d.Subject() == f.Subject) && (f.Period == "" || d.Period == f.Period) && (f.State == "" || d.State == f.State) {
				out = append(out, d)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("alert deliveries: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ClaimedAt.Equal(out[j].ClaimedAt) {
			return out[i].ClaimedAt.After(out[j].ClaimedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out[:min(len(out), f.Limit)], nil
}

func (e *Embedded) Redeliver(_ context.Context, id string, now time.Time) (Delivery, error) {
	var d Delivery
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(claimsBucket)
		var r record
		if json.Unmarshal(b.Get([]byte(id)), &r) != nil {
			return fmt.Errorf("redeliver %s: %w", id, ErrNotFound)
		}
		d = Delivery{Alert: r.Alert, State: Pending, ClaimedAt: now, NextAt: now}
		return put(b, d)
	})
	return d, err
}
