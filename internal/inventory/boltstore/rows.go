package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// encodeRow packs a row's values (not its ID, which is the key) into 24
// bytes: stock, layaway, updDateTime in Unix microseconds, big-endian.
func encodeRow(r inventory.Row) []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v[0:], uint64(r.StockAmount))
	binary.BigEndian.PutUint64(v[8:], uint64(r.LayawayStockAmount))
	t := int64(zeroTimeMicros)
	if !r.UpdDateTime.IsZero() {
		t = r.UpdDateTime.UnixMicro()
	}
	binary.BigEndian.PutUint64(v[16:], uint64(t))
	return v
}

func decodeRow(id, v []byte) (inventory.Row, error) {
	if len(v) != 24 {
		return inventory.Row{}, fmt.Errorf("corrupt row %q: %d bytes", id, len(v))
	}
	r := inventory.Row{
		ProductID:          string(id),
		StockAmount:        int64(binary.BigEndian.Uint64(v[0:])),
		LayawayStockAmount: int64(binary.BigEndian.Uint64(v[8:])),
	}
	if t := int64(binary.BigEndian.Uint64(v[16:])); t != zeroTimeMicros {
		r.UpdDateTime = time.UnixMicro(t).UTC()
	}
	return r, nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// ApplyPull implements inventory.Store.
func (s *Store) ApplyPull(ctx context.Context, key inventory.StoreKey, rows []inventory.Row, watermark time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	rows, err := inventory.LatestPerProduct(rows)
	if err != nil {
		return 0, err
	}
	changed := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		changed = 0
		var changedIDs []string
		sb, rb, err := storeBucket(tx, key)
		if err != nil {
			return err
		}
		m, err := readMeta(sb)
		if err != nil {
			return err
		}
		for _, r := range rows {
			id := []byte(r.ProductID)
			old := rb.Get(id)
			if old != nil {
				prev, err := decodeRow(id, old)
				if err != nil {
					return err
				}
				if prev.SameLevel(r) {
					continue
				}
			} else {
				m.SKUs++
			}
			if err := rb.Put(id, encodeRow(r)); err != nil {
				return err
			}
			changed++
			changedIDs = append(changedIDs, r.ProductID)
		}
		if err := s.recordChanges(tx, key, changedIDs); err != nil {
			return err
		}
		// An open full sync must see these rows too, or its commit would
		// put back the older values it staged before this pull.
		if m.FullSyncID != 0 {
			if stg := stagedRows(tx, m.FullSyncID); stg != nil {
				if err := stageRows(stg, rows); err != nil {
					return err
				}
			}
		}
		watermark = inventory.NormalizeTime(watermark)
		if watermark.After(m.Watermark) {
			m.Watermark = watermark
		}
		m.LastPull = time.Now().UTC()
		return writeMeta(sb, m)
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: applying pull for %s: %w", key, err)
	}
	return changed, nil
}

// stageRows writes rows into a staging bucket keeping, per product, the row
// with the newest UpdDateTime (the later one on a tie).
func stageRows(stg *bolt.Bucket, rows []inventory.Row) error {
	// An import's staged bucket becomes the mirror (Commit moves it), so
	// its pages should be as dense as the mirror's. Listings often come in
	// key order (rows of equal updDateTime are ordered by productId), where
	// bbolt's default split would leave every page half empty; in any other
	// order each transaction's pages are still split once, at commit.
	stg.FillPercent = 1.0
	for _, r := range rows {
		id := []byte(r.ProductID)
		if old := stg.Get(id); old != nil {
			prev, err := decodeRow(id, old)
			if err != nil {
				return err
			}
			if r.UpdDateTime.Before(prev.UpdDateTime) {
				continue
			}
		}
		if err := stg.Put(id, encodeRow(r)); err != nil {
			return err
		}
	}
	return nil
}

// Rows implements inventory.Store.
func (s *Store) Rows(ctx context.Context, key inventory.StoreKey, fn func(inventory.Row) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(key))
		if sb == nil {
			return nil
		}
		rb := sb.Bucket(bucketRows)
		if rb == nil {
			return nil
		}
		c := rb.Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			r, err := decodeRow(k, v)
			if err != nil {
				return fmt.Errorf("boltstore: reading rows of %s: %w", key, err)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// RowsPage implements inventory.Store: one short read transaction per page,
// positioned with a cursor Seek.
func (s *Store) RowsPage(ctx context.Context, key inventory.StoreKey, afterProductID string, limit int) ([]inventory.Row, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("boltstore: reading rows of %s: page limit %d is not positive", key, limit)
	}
	var out []inventory.Row
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(key))
		if sb == nil {
			return nil
		}
		rb := sb.Bucket(bucketRows)
		if rb == nil {
			return nil
		}
		c := rb.Cursor()
		after := []byte(afterProductID)
		k, v := c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			r, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			if out == nil {
				out = make([]inventory.Row, 0, min(limit, 1024))
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: reading rows of %s: %w", key, err)
	}
	return out, nil
}

// Row implements inventory.Store.
func (s *Store) Row(ctx context.Context, key inventory.StoreKey, productID string) (inventory.Row, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Row{}, false, err
	}
	var (
		r     inventory.Row
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(key))
		if sb == nil || sb.Bucket(bucketRows) == nil {
			return nil
		}
		v := sb.Bucket(bucketRows).Get([]byte(productID))
		if v == nil {
			return nil
		}
		var err error
		r, err = decodeRow([]byte(productID), v)
		found = err == nil
		return err
	})
	if err != nil {
		return inventory.Row{}, false, fmt.Errorf("boltstore: reading row %s of %s: %w", productID, key, err)
	}
	return r, found, nil
}

// Summary implements inventory.Store.
func (s *Store) Summary(ctx context.Context, key inventory.StoreKey) (inventory.Summary, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Summary{}, err
	}
	var m meta
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = readMeta(tx.Bucket(bucketStores).Bucket(storeKeyBytes(key)))
		return err
	})
	if err != nil {
		return inventory.Summary{}, fmt.Errorf("boltstore: reading summary of %s: %w", key, err)
	}
	return inventory.Summary{
		SKUs: m.SKUs, Watermark: m.Watermark, LastPull: m.LastPull,
		LastFullSync: m.LastFullSync, LastDrift: m.LastDrift,
	}, nil
}
