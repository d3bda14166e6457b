package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// RotatedForAnnotation prefixes the key Secret's per-store record of the
// rotate-key value that its current key answers (see
// smaregiv1alpha1.RotatedForAnnotation for why the Secret keeps it).
const RotatedForAnnotation = smaregiv1alpha1.RotatedForAnnotation

// RevokedForAnnotation prefixes the key Secret's per-store record of the
// last handled revoke-previous-key value (revokedForKey).
const RevokedForAnnotation = "smaregi.stocksync.io/revoked-for"

// ReasonKeySecretConflict is ReceiverReady's reason when <name>-receiver-key
// exists but does not belong to this SmaregiStore. The operator never
// overwrites a Secret it does not control.
const ReasonKeySecretConflict = "KeySecretConflict"

// newReceiverKey returns a fresh random key (webhookserver.NewKey: 256
// bits, base64url, safe in a form field and in Smaregi's パラメータ情報).
func newReceiverKey() []byte { return webhookserver.NewKey() }

// keyAction is something done to the key Secret that deserves an event.
type keyAction struct {
	reason, action, note string
}

// rotatedForKey is the annotation of the contract key Secret that records,
// per store, the rotate-key value the current key answers: each store's
// annotation asks for its own rotations of the one shared key.
func rotatedForKey(uid types.UID) string { return RotatedForAnnotation + "." + string(uid) }

// revokedForKey is the key Secret's annotation recording the store's last
// handled revoke-previous-key value, so that each value revokes once.
func revokedForKey(uid types.UID) string { return RevokedForAnnotation + "." + string(uid) }

// reconcileReceiver owns the ReceiverReady condition and status.receiver.
// Smaregi has one send URL and parameter per contract, so every store of a
// (namespace, contract) shares one key Secret (ContractKeySecretName) and
// one route: the Secret's UID, stable while it lives. The Secret is owned by
// every store of the contract (plain owner references, no controller), so
// the garbage collector removes it with the last one, and a store that
// joins says that Smaregi needs nothing more. The step keeps the Secret's
// layout in line with the spec (parameter name, rotation, expiry of the
// previous key) and runs even while suspended: sends are still recorded.
func (r *SmaregiStoreReconciler) reconcileReceiver(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) (stepResult, *smaregiv1alpha1.ReceiverStatus) {
	param := store.ReceiverParameterName()
	name := smaregiv1alpha1.ContractKeySecretName(store.Spec.ContractID)
	now := r.Clock.Now()

	var secret corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		created, res, ok := r.createKeySecret(ctx, store, name, param)
		if !ok {
			return res, nil
		}
		secret = *created
	case err != nil:
		return retrying(fmt.Errorf("get key Secret %s/%s: %w", store.Namespace, name, err)), nil
	}
	contract, err := r.contractStores(ctx, store)
	if err != nil {
		return retrying(err), nil
	}
	if !keySecretOfContract(&secret, store, contract) {
		return stepResult{
			status: metav1.ConditionFalse, reason: ReasonKeySecretConflict, outcome: outcomeStalled,
			requeueAfter: jitter(r.StalledRecheckInterval),
			message: fmt.Sprintf("Secret %q exists but is not the receiver key of contract %q made by this operator (label, "+
				"annotation %s and an owner among the contract's SmaregiStores); the operator will not overwrite it: delete or rename it",
				name, store.Spec.ContractID, smaregiv1alpha1.ContractIDAnnotation),
		}, nil
	}

	var actions []keyAction
	if !ownedBy(&secret, store.UID) {
		// Joining a contract that already has its key: the shop already
		// entered this URL and value in Smaregi, if the contract is set up.
		// The store's current rotate-key value is taken as answered, so
		// joining never rotates the key the shop uses.
		secret.OwnerReferences = append(secret.OwnerReferences, ownerRef(store))
		if v := store.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; v != "" {
			metav1.SetMetaDataAnnotation(&secret.ObjectMeta, rotatedForKey(store.UID), v)
		}
		actions = append(actions, keyAction{"KeyShared", "JoinContractKey", fmt.Sprintf(
			"this store shares the receiver URL and key of contract %q (Secret %q) with %d other SmaregiStore(s): "+
				"if Smaregi is already set up for the contract, nothing more is needed there", store.Spec.ContractID, name, len(contract)-1)})
	}
	if cur := secretParameter(&secret); cur != param && len(contract) > 1 && otherOwners(&secret, store.UID, contract) {
		return stepResult{
			status: metav1.ConditionFalse, reason: ReasonKeySecretConflict, outcome: outcomeStalled,
			requeueAfter: jitter(r.StalledRecheckInterval),
			message: fmt.Sprintf("spec.receiver.parameterName %q differs from %q used by the other SmaregiStores of contract %q: "+
				"Smaregi sends one parameter per contract, so set the same name on all of them", param, cur, store.Spec.ContractID),
		}, nil
	}
	actions = append(actions, layoutKeySecret(&secret, store, param, now, r.KeyRotationGrace)...)
	if len(actions) > 0 {
		// Update carries the resourceVersion we read: a stale cache or a
		// concurrent writer (another store of the contract) gets a conflict
		// instead of a double rotation or a lost owner.
		if err := r.Client.Update(ctx, &secret); err != nil {
			return retrying(fmt.Errorf("update key Secret %s/%s: %w", store.Namespace, name, err)), nil
		}
		for _, a := range actions {
			r.Recorder.Eventf(store, &secret, corev1.EventTypeNormal, a.reason, a.action, a.note)
		}
	}

	status := &smaregiv1alpha1.ReceiverStatus{
		URL:           strings.TrimRight(r.ReceiverBaseURL, "/") + smaregiv1alpha1.ReceiverPathPrefix + string(secret.UID),
		RouteID:       string(secret.UID),
		KeySecretRef:  &smaregiv1alpha1.SecretKeyReference{Name: name, Key: param},
		ParameterName: param,
		LastRotation:  secret.Annotations[rotatedForKey(store.UID)],
	}
	res := stepResult{
		status: metav1.ConditionTrue, reason: smaregiv1alpha1.ReasonKeyProvisioned, outcome: outcomeOK,
		message: fmt.Sprintf("in Smaregi's API送信設定 set 送信URL to %s and add パラメータ情報 %q with the value of key %q in Secret %q; "+
			"this URL and key serve every SmaregiStore of contract %q in namespace %s", status.URL, param, param, name,
			store.Spec.ContractID, store.Namespace),
	}
	if _, ok := secret.Data[param+smaregiv1alpha1.PreviousKeySuffix]; ok {
		// layoutKeySecret removed an expired or unreadable expiry, so this
		// parses and lies in the future.
		exp, _ := time.Parse(time.RFC3339, secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
		status.PreviousKeyExpiresAt = &metav1.Time{Time: exp}
		res.reason = smaregiv1alpha1.ReasonKeyRotating
		res.message = fmt.Sprintf("the receiver key of contract %q (shared by its %d SmaregiStore(s) here) was rotated: put the new "+
			"value of key %q in Secret %q into パラメータ情報 %q in Smaregi's API送信設定 before %s, when the previous key stops being accepted",
			store.Spec.ContractID, len(contract), param, name, param, exp.Format(time.RFC3339))
		// Come back when the previous key expires to remove it.
		res.requeueAfter = exp.Sub(now) + time.Second
	}
	return res, status
}

// contractStores lists the SmaregiStores of the store's contract in its
// namespace (the store itself included), from the cache.
func (r *SmaregiStoreReconciler) contractStores(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) ([]smaregiv1alpha1.SmaregiStore, error) {
	var list smaregiv1alpha1.SmaregiStoreList
	// Read only, and run for every reconcile: without the copy, a
	// namespace of N stores costs N object copies less per reconcile.
	if err := r.Client.List(ctx, &list, client.InNamespace(store.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list the SmaregiStores of contract %s in %s: %w", store.Spec.ContractID, store.Namespace, err)
	}
	out := []smaregiv1alpha1.SmaregiStore{*store}
	for _, s := range list.Items {
		if s.Spec.ContractID == store.Spec.ContractID && s.UID != store.UID {
			out = append(out, s)
		}
	}
	return out, nil
}

// keySecretOfContract reports whether secret is the operator's key Secret of
// the store's contract: labelled, annotated with the exact contract ID and
// owned by one of the contract's stores. A Secret that only has the right
// name (planted, or left from something else) is never adopted.
func keySecretOfContract(secret *corev1.Secret, store *smaregiv1alpha1.SmaregiStore, contract []smaregiv1alpha1.SmaregiStore) bool {
	if secret.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue ||
		secret.Annotations[smaregiv1alpha1.ContractIDAnnotation] != store.Spec.ContractID {
		return false
	}
	for i := range contract {
		if ownedBy(secret, contract[i].UID) {
			return true
		}
	}
	return false
}

// otherOwners reports whether another live store of the contract owns the
// Secret besides uid.
func otherOwners(secret *corev1.Secret, uid types.UID, contract []smaregiv1alpha1.SmaregiStore) bool {
	for i := range contract {
		if contract[i].UID != uid && ownedBy(secret, contract[i].UID) {
			return true
		}
	}
	return false
}

// ownedBy reports whether obj has an owner reference to the SmaregiStore
// with uid.
func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == uid && ref.Kind == "SmaregiStore" {
			return true
		}
	}
	return false
}

// ownerRef is the owner reference a store puts on its contract's key
// Secret: not a controller reference (several stores own the Secret).
func ownerRef(store *smaregiv1alpha1.SmaregiStore) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: smaregiv1alpha1.GroupVersion.String(), Kind: "SmaregiStore", Name: store.Name, UID: store.UID}
}

// secretParameter is the send parameter the contract key Secret answers.
func secretParameter(secret *corev1.Secret) string {
	if p := secret.Annotations[smaregiv1alpha1.ParameterNameAnnotation]; p != "" {
		return p
	}
	return smaregiv1alpha1.DefaultReceiverParameterName
}

// createKeySecret creates the contract's key Secret with a fresh key,
// owned by store. ok is false when the step must stop with res.
func (r *SmaregiStoreReconciler) createKeySecret(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, name, param string) (_ *corev1.Secret, res stepResult, ok bool) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: store.Namespace,
			Labels:    map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
			Annotations: map[string]string{
				smaregiv1alpha1.ContractIDAnnotation:    store.Spec.ContractID,
				smaregiv1alpha1.ParameterNameAnnotation: param,
			},
			OwnerReferences: []metav1.OwnerReference{ownerRef(store)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{param: newReceiverKey()},
	}
	// A fresh key already answers any rotation asked for so far.
	if v := store.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; v != "" {
		secret.Annotations[rotatedForKey(store.UID)] = v
	}
	err := r.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		// The cache has not seen it yet, or it is someone else's (without
		// our label the cache never will): ask the API server.
		existing := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), existing); err != nil {
			return nil, retrying(fmt.Errorf("get existing key Secret %s/%s: %w", secret.Namespace, secret.Name, err)), false
		}
		return existing, stepResult{}, true
	}
	if err != nil {
		return nil, retrying(fmt.Errorf("create key Secret %s/%s: %w", secret.Namespace, secret.Name, err)), false
	}
	r.Recorder.Eventf(store, secret, corev1.EventTypeNormal, smaregiv1alpha1.ReasonKeyProvisioned, "ProvisionKey",
		"created the receiver key of contract %q in Secret %q under key %q", store.Spec.ContractID, secret.Name, param)
	return secret, stepResult{}, true
}

// leaveContractKey removes the store from the owners of its contract's key
// Secret when it is deleted, and deletes the Secret with the last owner (the
// garbage collector would too, but only eventually, and not at all where
// none runs).
func (r *SmaregiStoreReconciler) leaveContractKey(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) error {
	name := smaregiv1alpha1.ContractKeySecretName(store.Spec.ContractID)
	var secret corev1.Secret
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: name}, &secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !ownedBy(&secret, store.UID) {
		return nil
	}
	refs := secret.OwnerReferences[:0]
	stores := 0
	for _, ref := range secret.OwnerReferences {
		if ref.UID == store.UID {
			continue
		}
		if ref.Kind == "SmaregiStore" {
			stores++
		}
		refs = append(refs, ref)
	}
	if stores == 0 {
		if err := r.Client.Delete(ctx, &secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete key Secret %s/%s with its last store: %w", store.Namespace, name, err)
		}
		return nil
	}
	secret.OwnerReferences = refs
	delete(secret.Annotations, rotatedForKey(store.UID))
	if err := r.Client.Update(ctx, &secret); err != nil {
		return fmt.Errorf("remove %s from the owners of key Secret %s/%s: %w", store.Name, store.Namespace, name, err)
	}
	return nil
}

// layoutKeySecret brings the Secret in line with the spec and the clock and
// returns what it changed (nil: nothing to write). It never puts a key into
// a returned message.
func layoutKeySecret(secret *corev1.Secret, store *smaregiv1alpha1.SmaregiStore, param string, now time.Time, grace time.Duration) []keyAction {
	var actions []keyAction
	prevKey := param + smaregiv1alpha1.PreviousKeySuffix
	if secret.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue {
		// Without the label the manager's cache (and so the receiver)
		// cannot see the Secret.
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels[smaregiv1alpha1.ManagedByLabel] = smaregiv1alpha1.ManagedByValue
		actions = append(actions, keyAction{"KeySecretRelabelled", "LabelKeySecret", "restored the managed-by label on the receiver key Secret"})
	}
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}

	if len(secret.Data[param]) == 0 {
		if old := oldParameterName(secret, store); old != "" {
			// The shop keeps its key value when only the parameter's name
			// changes: move the value (and a previous key in grace).
			secret.Data[param] = secret.Data[old]
			delete(secret.Data, old)
			if prev, ok := secret.Data[old+smaregiv1alpha1.PreviousKeySuffix]; ok {
				secret.Data[prevKey] = prev
				delete(secret.Data, old+smaregiv1alpha1.PreviousKeySuffix)
			}
			metav1.SetMetaDataAnnotation(&secret.ObjectMeta, smaregiv1alpha1.ParameterNameAnnotation, param)
			actions = append(actions, keyAction{"KeyMoved", "MoveKey",
				fmt.Sprintf("receiver key moved from key %q to %q after spec.receiver.parameterName changed", old, param)})
		} else {
			secret.Data[param] = newReceiverKey()
			actions = append(actions, keyAction{smaregiv1alpha1.ReasonKeyProvisioned, "ProvisionKey",
				fmt.Sprintf("receiver key was missing from Secret %q; generated a new one under key %q", secret.Name, param)})
		}
	}

	if want := store.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; want != "" && want != secret.Annotations[rotatedForKey(store.UID)] {
		expires := now.Add(grace).UTC().Truncate(time.Second)
		secret.Data[prevKey] = secret.Data[param]
		secret.Data[param] = newReceiverKey()
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[rotatedForKey(store.UID)] = want
		secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation] = expires.Format(time.RFC3339)
		actions = append(actions, keyAction{"KeyRotated", "RotateKey",
			fmt.Sprintf("the receiver key of contract %q rotated (rotate-key %q on this store); every SmaregiStore of the contract uses "+
				"the new key, and the previous one stays valid under %q until %s", store.Spec.ContractID, want, prevKey, expires.Format(time.RFC3339))})
	}

	if secret.Annotations[smaregiv1alpha1.ParameterNameAnnotation] != param {
		metav1.SetMetaDataAnnotation(&secret.ObjectMeta, smaregiv1alpha1.ParameterNameAnnotation, param)
		if len(actions) == 0 {
			actions = append(actions, keyAction{"KeyMoved", "MoveKey", fmt.Sprintf("the receiver key now answers parameter %q", param)})
		}
	}

	if want := store.Annotations[smaregiv1alpha1.RevokePreviousKeyAnnotation]; want != "" && want != secret.Annotations[revokedForKey(store.UID)] {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[revokedForKey(store.UID)] = want
		msg := "revoke-previous-key: there was no previous receiver key to revoke"
		if _, ok := secret.Data[prevKey]; ok {
			delete(secret.Data, prevKey)
			delete(secret.Annotations, smaregiv1alpha1.PreviousKeyExpiresAnnotation)
			msg = fmt.Sprintf("the previous receiver key (%q) of contract %q was revoked at once (revoke-previous-key %q on this store): "+
				"sends with it are refused from now on", prevKey, store.Spec.ContractID, want)
		}
		actions = append(actions, keyAction{"PreviousKeyRevoked", "RevokeKey", msg})
	}

	if _, ok := secret.Data[prevKey]; ok {
		exp, err := time.Parse(time.RFC3339, secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
		// An unreadable expiry counts as expired: accepting an old key
		// forever is the worse failure.
		if err != nil || !now.Before(exp) {
			delete(secret.Data, prevKey)
			delete(secret.Annotations, smaregiv1alpha1.PreviousKeyExpiresAnnotation)
			actions = append(actions, keyAction{"PreviousKeyExpired", "ExpireKey",
				fmt.Sprintf("the previous receiver key (%q) expired and was removed", prevKey)})
		}
	} else if _, ok := secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]; ok {
		delete(secret.Annotations, smaregiv1alpha1.PreviousKeyExpiresAnnotation)
		actions = append(actions, keyAction{"PreviousKeyExpired", "ExpireKey", "removed a stale expiry annotation"})
	}
	return actions
}

// oldParameterName finds the key that held the receiver key before
// spec.receiver.parameterName changed: the one the status published, or
// else the only current (non-previous) key in the Secret.
func oldParameterName(secret *corev1.Secret, store *smaregiv1alpha1.SmaregiStore) string {
	if rs := store.Status.Receiver; rs != nil && rs.ParameterName != "" && len(secret.Data[rs.ParameterName]) > 0 {
		return rs.ParameterName
	}
	var found string
	for k, v := range secret.Data {
		if strings.HasSuffix(k, smaregiv1alpha1.PreviousKeySuffix) || len(v) == 0 {
			continue
		}
		if found != "" {
			return "" // ambiguous: better a new key than the wrong one
		}
		found = k
	}
	return found
}

func retrying(err error) stepResult {
	return stepResult{
		status: metav1.ConditionUnknown, reason: smaregiv1alpha1.ReasonProgressing, outcome: outcomeRetrying,
		message: "waiting for the Kubernetes API; retrying", err: err, keepPrevious: true,
	}
}
