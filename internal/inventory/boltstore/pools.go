package boltstore

// Pool orders. Layout, one bucket per pool under the top-level "pools"
// bucket:
//
//	pools/<ns>\x00<pool>/orders/<id>                       = JSON inventory.PoolOrder
//	pools/<ns>\x00<pool>/unsubmitted/<created µs><id>      = "" (not yet MarkPoolOrderSubmitted)

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

var (
	bucketPools       = []byte("pools")
	bucketOrders      = []byte("orders")
	bucketUnsubmitted = []byte("unsubmitted")
)

var _ inventory.PoolOrderStore = (*Store)(nil)

// poolBuckets returns the pool's buckets; nil ones when !create and the pool
// has none yet.
func poolBuckets(tx *bolt.Tx, pool inventory.StoreKey, create bool) (orders, unsubmitted *bolt.Bucket, err error) {
	top := tx.Bucket(bucketPools)
	pk := storeKeyBytes(pool)
	if !create {
		root := top.Bucket(pk)
		if root == nil {
			return nil, nil, nil
		}
		return root.Bucket(bucketOrders), root.Bucket(bucketUnsubmitted), nil
	}
	root, err := top.CreateBucketIfNotExists(pk)
	if err != nil {
		return nil, nil, err
	}
	if orders, err = root.CreateBucketIfNotExists(bucketOrders); err != nil {
		return nil, nil, err
	}
	unsubmitted, err = root.CreateBucketIfNotExists(bucketUnsubmitted)
	return orders, unsubmitted, err
}

func getPoolOrder(b *bolt.Bucket, id string) (*inventory.PoolOrder, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var o inventory.PoolOrder
	if err := json.Unmarshal(v, &o); err != nil {
		return nil, fmt.Errorf("decoding pool order %q: %w", id, err)
	}
	return &o, nil
}

func putPoolOrder(b *bolt.Bucket, o *inventory.PoolOrder) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return b.Put([]byte(o.ID), v)
}

// RecordPoolOrder implements inventory.PoolOrderStore.
func (s *Store) RecordPoolOrder(ctx context.Context, o inventory.PoolOrder) (inventory.PoolOrder, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.PoolOrder{}, false, err
	}
	o, err := inventory.NormalizePoolOrder(o, time.Now())
	if err != nil {
		return inventory.PoolOrder{}, false, err
	}
	var (
		stored  inventory.PoolOrder
		created bool
	)
	err = s.group.update(func(tx *bolt.Tx) error {
		created = false
		orders, unsubmitted, err := poolBuckets(tx, o.Pool, true)
		if err != nil {
			return err
		}
		old, err := getPoolOrder(orders, o.ID)
		if err != nil {
			return err
		}
		if old != nil {
			if old.Fingerprint != o.Fingerprint {
				return inventory.ErrAdjustmentConflict
			}
			stored = *old
			return nil
		}
		if err := putPoolOrder(orders, &o); err != nil {
			return err
		}
		stored, created = o, true
		return unsubmitted.Put(pendingKey(o.CreatedAt, o.ID), nil)
	})
	if err != nil {
		return inventory.PoolOrder{}, false, fmt.Errorf("boltstore: recording pool order %s of %s: %w", o.ID, o.Pool, err)
	}
	return stored, created, nil
}

// GetPoolOrder implements inventory.PoolOrderStore.
func (s *Store) GetPoolOrder(ctx context.Context, pool inventory.StoreKey, id string) (inventory.PoolOrder, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.PoolOrder{}, false, err
	}
	var o *inventory.PoolOrder
	err := s.db.View(func(tx *bolt.Tx) error {
		orders, _, err := poolBuckets(tx, pool, false)
		if err != nil || orders == nil {
			return err
		}
		o, err = getPoolOrder(orders, id)
		return err
	})
	if err != nil {
		return inventory.PoolOrder{}, false, fmt.Errorf("boltstore: reading pool order %s of %s: %w", id, pool, err)
	}
	if o == nil {
		return inventory.PoolOrder{}, false, nil
	}
	return *o, true, nil
}

// UnsubmittedPoolOrders implements inventory.PoolOrderStore.
func (s *Store) UnsubmittedPoolOrders(ctx context.Context, pool inventory.StoreKey) ([]inventory.PoolOrder, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []inventory.PoolOrder
	err := s.db.View(func(tx *bolt.Tx) error {
		orders, unsubmitted, err := poolBuckets(tx, pool, false)
		if err != nil || orders == nil {
			return err
		}
		return unsubmitted.ForEach(func(k, _ []byte) error {
			o, err := getPoolOrder(orders, string(k[8:]))
			if err != nil {
				return err
			}
			if o != nil {
				out = append(out, *o)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: listing unsubmitted pool orders of %s: %w", pool, err)
	}
	return out, nil
}

// MarkPoolOrderSubmitted implements inventory.PoolOrderStore.
func (s *Store) MarkPoolOrderSubmitted(ctx context.Context, pool inventory.StoreKey, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.group.update(func(tx *bolt.Tx) error {
		orders, unsubmitted, err := poolBuckets(tx, pool, false)
		if err != nil || orders == nil {
			return err
		}
		o, err := getPoolOrder(orders, id)
		if err != nil || o == nil || o.Submitted {
			return err
		}
		o.Submitted = true
		if err := putPoolOrder(orders, o); err != nil {
			return err
		}
		return unsubmitted.Delete(pendingKey(o.CreatedAt, o.ID))
	})
	if err != nil {
		return fmt.Errorf("boltstore: marking pool order %s of %s submitted: %w", id, pool, err)
	}
	return nil
}

// LockPool implements inventory.PoolOrderStore. A bbolt file is open in one
// process only, so a mutex per pool is enough.
func (s *Store) LockPool(ctx context.Context, pool inventory.StoreKey) (func(), error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.poolLocks.Lock(ctx, pool)
}
