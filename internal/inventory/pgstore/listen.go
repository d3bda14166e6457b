package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Subscribe implements inventory.Store. One LISTEN connection per Store
// feeds every subscriber; it starts with the first Subscribe, which waits
// (up to 5s) until LISTEN is in place. If it is not by then, Subscribe
// returns anyway: "from now on" still holds, because every successful
// connect, the first included, republishes the stores marked dirty and those
// with pending adjustments, which covers the notifications sent before
// LISTEN was in place.
func (s *Store) Subscribe(ctx context.Context) <-chan inventory.StoreKey {
	ch := s.feed.Subscribe(ctx)
	s.startListening(ctx)
	return ch
}

// startListening starts the shared LISTEN connection (both channels) once
// and waits until it is in place.
func (s *Store) startListening(ctx context.Context) {
	s.listenOnce.Do(func() {
		s.wg.Add(1)
		go s.listen()
	})
	select {
	case <-s.listenReady:
	case <-ctx.Done():
	case <-time.After(s.listenWait):
	}
}

// listen holds a dedicated connection in LISTEN and republishes every
// notification. Each time LISTEN is in place, at the first connect as after
// a lost connection, it publishes every store marked dirty or with pending
// adjustments, since notifications sent while nothing listened are gone:
// before the first connect (which Subscribe stops waiting for after a
// while) as while reconnecting.
func (s *Store) listen() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := s.listenOnceConn(ctx, func() {
			if marks, err := s.Dirty(ctx); err == nil {
				for _, m := range marks {
					s.feed.Publish(m.Key)
				}
			}
			if keys, err := s.StoresWithPendingAdjustments(ctx); err == nil {
				s.adjFeed.Publish(keys...)
			}
			if first {
				close(s.listenReady)
				first = false
			}
			backoff = 100 * time.Millisecond
		})
		if ctx.Err() != nil || err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnceConn(ctx context.Context, ready func()) error {
	if s.beforeListen != nil {
		if err := s.beforeListen(ctx); err != nil {
			return err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel+"; LISTEN "+adjustmentsChannel+"; LISTEN "+versionsChannel); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		key, err := inventory.ParseStoreKey(n.Payload)
		if err != nil {
			continue
		}
		switch n.Channel {
		case adjustmentsChannel:
			s.adjFeed.Publish(key)
		case versionsChannel:
			s.verFeed.Publish(key)
		default:
			s.feed.Publish(key)
		}
	}
}
