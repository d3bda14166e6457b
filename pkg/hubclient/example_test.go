package hubclient_test

import (
	"context"
	"log"

	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// The examples are compiled, not run (no hub API here): they are the Go
// snippets of docs/hub-api.md, kept compiling.

func ExampleClient_Sync() {
	ctx := context.Background()
	c := &hubclient.Client{
		BaseURL:   "https://hub.example.com",
		TokenFile: "/var/run/secrets/hub/token", // projected token, audience smaregi-operator-hub
	}
	m := hubclient.NewMirror()
	m.OnApply = func(e hubclient.Event) {
		log.Printf("%s %s available=%d (rv %d)", e.Type, e.Item.ProductID, e.Item.Available, e.ResourceVersion)
	}
	go func() { _ = c.Sync(ctx, "default", "shibuya", m) }() // until ctx ends
	// anywhere:
	if it, ok := m.Get("8000001"); ok && it.Available >= 2 {
		// sell
	}
}

func ExampleClient_SyncPool() {
	ctx := context.Background()
	c := &hubclient.Client{BaseURL: "https://hub.example.com", TokenFile: "/var/run/secrets/hub/token"}
	pm := hubclient.NewPoolMirror()
	pm.OnApply = func(e hubclient.PoolEvent) {
		log.Printf("%s %s available=%d", e.Type, e.Item.ProductID, e.Item.Available)
	}
	pm.OnReplace = func(items []hubclient.PoolItem, rv string) {
		log.Printf("the pool listed again: %d products", len(items)) // members or safety stock changed
	}
	go func() { _ = c.SyncPool(ctx, "default", "tokyo", pm) }() // until ctx ends
	if it, ok := pm.Get("8000001"); ok && it.Available >= 2 {
		// sell from the pool: POST …/stockpools/tokyo/adjustments
		for _, m := range it.Members {
			log.Printf("%s has %d", m.Store, m.Available)
		}
	}
}
