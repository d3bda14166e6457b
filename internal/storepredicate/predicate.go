// Package storepredicate holds the event filters that SmaregiStore
// watchers share: each controller reacts to another writer's condition only
// when the parts of it that matter to that controller change.
package storepredicate

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// ConditionChanged passes updates of a SmaregiStore whose condition condType
// differs by key between the old and the new object (a missing condition
// is the zero metav1.Condition). Creates, deletes and generic events do not
// pass: other predicates cover them.
func ConditionChanged[K comparable](condType string, key func(metav1.Condition) K) predicate.Funcs {
	get := func(s *v1alpha1.SmaregiStore) K {
		var c metav1.Condition
		if found := meta.FindStatusCondition(s.Status.Conditions, condType); found != nil {
			c = *found
		}
		return key(c)
	}
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.SmaregiStore)
			n, ok2 := e.ObjectNew.(*v1alpha1.SmaregiStore)
			return ok1 && ok2 && get(o) != get(n)
		},
	}
}
