package storemetrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// The collector reads a real informer cache, as the manager's, over a real
// API server: the store's status as the controller writes it.
func TestCollectorReadsTheInformerCache(t *testing.T) {
	cfg, stop := testenv.Start(t)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	scheme := testenv.Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	store := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shibuya"},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{ContractID: "sb_abc123", StoreID: "1",
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "shibuya-smaregi"}},
	}
	if err := c.Create(ctx, store); err != nil {
		t.Fatal(err)
	}
	store.Status.Conditions = []metav1.Condition{{Type: smaregiv1alpha1.CredentialsValidCondition, Status: metav1.ConditionTrue,
		Reason: smaregiv1alpha1.ReasonSucceeded, LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(ctx, store); err != nil {
		t.Fatal(err)
	}

	informers, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	// The first List starts the SmaregiStore informer and waits for its
	// sync; the status update above was written before, so it is seen.
	want := `
# HELP smaregi_store_condition Status conditions of a SmaregiStore: 1 for the condition's current status (True, False or Unknown), 0 for the other two.
# TYPE smaregi_store_condition gauge
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="default",status="False"} 0
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="default",status="True"} 1
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="default",status="Unknown"} 0
# HELP smaregi_store_poll_interval_seconds The SmaregiStore's spec.sync.pollInterval: a mirror older than a few of these is stale.
# TYPE smaregi_store_poll_interval_seconds gauge
smaregi_store_poll_interval_seconds{name="shibuya",namespace="default"} 60
`
	if err := testutil.CollectAndCompare(New(informers, logr.Discard()), strings.NewReader(want),
		"smaregi_store_condition", "smaregi_store_poll_interval_seconds"); err != nil {
		t.Fatal(err)
	}
}
