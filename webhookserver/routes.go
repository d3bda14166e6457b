package webhookserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// route is what a receiver URL leads to: the SmaregiStores of one
// (namespace, contract) that publish it, and where their key is.
type route struct {
	// stores share namespace and contract; stores[0] names them.
	stores []smaregiv1alpha1.SmaregiStore
	// legacy is set when the URL is a store's own pre-contract route (its
	// UID): that store's old per-store key Secret is still accepted on it.
	legacy *smaregiv1alpha1.SmaregiStore
}

// lookupRoute finds the stores a route belongs to, from the cache indexes:
// every store of a contract publishes the contract's route; a route that is
// a store's UID is that store's URL from before one route per contract.
func (s *Server) lookupRoute(ctx context.Context, routeID string) (route, outcome, bool) {
	unavailable := refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later")
	unknown := refuse(http.StatusNotFound, ResultNotFound, "unknown route")
	var stores smaregiv1alpha1.SmaregiStoreList
	if err := s.opts.Reader.List(ctx, &stores, client.MatchingFields{RouteIDField: routeID}); err != nil {
		// The error may name the field value, that is the route: log only
		// that the look-up failed.
		s.log.Error(errors.New("list SmaregiStores by route failed"), "cannot look up a route", "errorType", fmt.Sprintf("%T", err))
		return route{}, unavailable, false
	}
	var rt route
	if len(stores.Items) == 0 {
		var legacy smaregiv1alpha1.SmaregiStoreList
		if err := s.opts.Reader.List(ctx, &legacy, client.MatchingFields{UIDField: routeID}); err != nil {
			s.log.Error(errors.New("list SmaregiStores by UID failed"), "cannot look up a route", "errorType", fmt.Sprintf("%T", err))
			return route{}, unavailable, false
		}
		if len(legacy.Items) != 1 {
			s.log.V(1).Info("refused a send: unknown route")
			return route{}, unknown, false
		}
		// A store's UID is a route only while the store's own key Secret
		// of an operator version before one key per contract still exists
		// (the shop may not have entered the contract's URL yet). Without
		// it the UID would be a second public route to the contract, one
		// that anyone who can read the store (or its owner references)
		// knows, that no shop was ever given and that nobody can close.
		switch ok, err := s.hasLegacyKeySecret(ctx, &legacy.Items[0]); {
		case err != nil:
			s.log.Error(errors.New("get a pre-contract key Secret failed"), "cannot look up a route", "errorType", fmt.Sprintf("%T", err))
			return route{}, unavailable, false
		case !ok:
			s.log.V(1).Info("refused a send: unknown route")
			return route{}, unknown, false
		}
		rt.legacy = &legacy.Items[0]
		stores.Items = legacy.Items
	}
	first := &stores.Items[0]
	for i := range stores.Items {
		st := &stores.Items[i]
		// The controller publishes one route per (namespace, contract);
		// stores elsewhere sharing it mean a hand-edited status, and serving
		// either would be a guess.
		if st.Namespace != first.Namespace || st.Spec.ContractID != first.Spec.ContractID {
			s.log.Error(errors.New("route shared across namespaces or contracts"), "refused a send", "stores", len(stores.Items))
			return route{}, unknown, false
		}
	}
	rt.stores = stores.Items
	return rt, outcome{}, true
}

// hasLegacyKeySecret reports whether store's own key Secret from before one
// key per contract still exists, made by the operator for that store.
func (s *Server) hasLegacyKeySecret(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) (bool, error) {
	var secret corev1.Secret
	if err := s.opts.SecretReader.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: store.ReceiverKeySecretName()}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return secret.Labels[smaregiv1alpha1.ManagedByLabel] == smaregiv1alpha1.ManagedByValue && controlledBy(&secret, store), nil
}

// authenticate checks the key parameter, given as the digest of its value
// (present: the form has a field of the parameter's name), against the
// contract's key Secret (and, on a store's pre-contract route, that store's
// old key Secret).
//
// Only a send that names the parameter counts towards SendsHealthy: one
// without it is what anyone who knows the URL can post, and tells nothing
// about the shop's settings (Smaregi always sends the parameters entered in
// 4.パラメータ情報).
func (s *Server) authenticate(ctx context.Context, log logr.Logger, rt route, gotSum [sha256.Size]byte, present bool) (outcome, bool) {
	unauthorized := refuse(http.StatusUnauthorized, ResultUnauthorized, "missing or wrong key parameter")
	store := &rt.stores[0]
	param, secretName, secretKey := store.ReceiverKeyLocation()
	if !present {
		log.V(1).Info("refused a send: no key parameter", "parameter", param)
		return unauthorized, false
	}
	if rt.legacy != nil {
		// The store's own key Secret of operator versions before one key
		// per contract, controlled by that store.
		switch m, err := s.matchKey(ctx, log, gotSum, rt.legacy.Namespace, rt.legacy.ReceiverKeySecretName(), param,
			func(secret *corev1.Secret) bool { return controlledBy(secret, rt.legacy) }); {
		case err != nil:
			return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later"), false
		case m != verdictWrong:
			log.V(1).Info("accepted a send on a store's pre-contract URL; the shop should enter the contract's URL once")
			return outcome{}, true
		}
	}
	m, err := s.matchKey(ctx, log, gotSum, store.Namespace, secretName, secretKey,
		func(secret *corev1.Secret) bool { return ownedByOneOf(secret, rt.stores) })
	if err != nil {
		return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later"), false
	}
	s.health.note(rt, m)
	if m == verdictWrong {
		return unauthorized, false
	}
	return outcome{}, true
}

// matchKey compares the key sent (as a digest) with the current and, while
// valid, the previous key in the named Secret, if the Secret is the
// operator's (label) and owned as owns says. A missing Secret is no match.
func (s *Server) matchKey(ctx context.Context, log logr.Logger, gotSum [sha256.Size]byte, ns, secretName, secretKey string,
	owns func(*corev1.Secret) bool) (verdict, error) {
	var secret corev1.Secret
	if err := s.opts.SecretReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			log.Info("refused a send: the receiver key Secret does not exist (yet)", "secret", secretName)
			return verdictWrong, nil
		}
		log.Error(err, "cannot read the receiver key Secret", "secret", secretName)
		return verdictWrong, err
	}
	// Only a Secret the operator made for these very stores may
	// authenticate sends. The label alone is not proof (anyone who may
	// create Secrets in the namespace can set it, e.g. before the
	// controller first runs); the owner reference to a store's UID is set
	// by the operator and names one store object, not a name that can be
	// re-created.
	if secret.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue {
		log.Info("refused a send: the receiver key Secret is not managed by the operator", "secret", secretName)
		return verdictWrong, nil
	}
	if !owns(&secret) {
		log.Info("refused a send: the receiver key Secret is not owned by the route's SmaregiStores", "secret", secretName)
		return verdictWrong, nil
	}
	current := keyMatches(gotSum, secret.Data[secretKey])
	previous := false
	if s.previousKeyValid(log, &secret) {
		previous = keyMatches(gotSum, secret.Data[secretKey+smaregiv1alpha1.PreviousKeySuffix])
	}
	if current {
		return verdictCurrent, nil
	}
	if previous {
		log.V(1).Info("accepted the previous receiver key; the shop has not entered the rotated one yet")
		return verdictPrevious, nil
	}
	log.V(1).Info("refused a send: wrong key")
	return verdictWrong, nil
}

// ownedByOneOf reports whether obj has an owner reference (controller or
// not) to one of stores, by UID, kind and group.
func ownedByOneOf(obj metav1.Object, stores []smaregiv1alpha1.SmaregiStore) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind != "SmaregiStore" {
			continue
		}
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || gv.Group != smaregiv1alpha1.GroupVersion.Group {
			continue
		}
		for i := range stores {
			if stores[i].UID != "" && ref.UID == stores[i].UID {
				return true
			}
		}
	}
	return false
}

// controlledBy reports whether obj's controller reference names store by
// UID (and kind and group, so that another resource with a colliding UID in
// a hand-written reference does not count).
func controlledBy(obj metav1.Object, store *smaregiv1alpha1.SmaregiStore) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || store.UID == "" || ref.UID != store.UID || ref.Kind != "SmaregiStore" {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == smaregiv1alpha1.GroupVersion.Group
}

// keyMatches compares digests, so the comparison takes the same time
// whatever the lengths of the two keys.
func keyMatches(gotSum [sha256.Size]byte, want []byte) bool {
	if len(want) == 0 {
		return false
	}
	return digestsMatch(gotSum, sha256.Sum256(want))
}

// digestsMatch compares two key digests in constant time.
func digestsMatch(a, b [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// previousKeyValid reports whether the rotated-out key is still accepted. A
// missing or unreadable expiry means it is not: failing closed costs the
// shop a resend, failing open would keep a leaked key alive.
func (s *Server) previousKeyValid(log logr.Logger, secret *corev1.Secret) bool {
	raw, ok := secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]
	if !ok {
		return false
	}
	expires, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		log.Info("ignoring the previous receiver key: its expiry is not RFC 3339", "secret", secret.Name)
		return false
	}
	return s.clock.Now().Before(expires)
}
