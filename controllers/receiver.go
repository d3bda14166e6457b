package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// RotatedForAnnotation is set on the key Secret to the rotate-key value
// that its current key answers. The Secret, not the status, is the record
// of a rotation: if the status write after a rotation failed, comparing the
// annotation with status.receiver.lastRotation would rotate a second time
// and throw away the key the shop is still using.
const RotatedForAnnotation = "smaregi.stocksync.io/rotated-for"

// ReasonKeySecretConflict is ReceiverReady's reason when <name>-receiver-key
// exists but does not belong to this SmaregiStore. The operator never
// overwrites a Secret it does not control.
const ReasonKeySecretConflict = "KeySecretConflict"

// receiverKeyBytes is the entropy of a receiver key (256 bits).
const receiverKeyBytes = 32

// newReceiverKey returns a fresh random key, base64url without padding (43
// characters, safe in a form field and in Smaregi's パラメータ情報).
// crypto/rand.Read cannot fail (it aborts the program instead), so there is
// no error to handle.
func newReceiverKey() []byte {
	b := make([]byte, receiverKeyBytes)
	_, _ = rand.Read(b)
	return []byte(base64.RawURLEncoding.EncodeToString(b))
}

// keyAction is something done to the key Secret that deserves an event.
type keyAction struct {
	reason, action, note string
}

// reconcileReceiver owns the ReceiverReady condition and status.receiver:
// it creates the key Secret once, keeps its layout in line with the spec
// (parameter name, rotation, expiry of the previous key) and publishes the
// URL. It runs even while suspended: sends that arrive are still recorded.
func (r *SmaregiStoreReconciler) reconcileReceiver(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) (stepResult, *smaregiv1alpha1.ReceiverStatus) {
	param := store.ReceiverParameterName()
	name := store.ReceiverKeySecretName()
	now := r.Clock.Now()

	var secret corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		created, res, ok := r.createKeySecret(ctx, store, param)
		if !ok {
			return res, nil
		}
		secret = *created
	case err != nil:
		return retrying(fmt.Errorf("get key Secret %s/%s: %w", store.Namespace, name, err)), nil
	}
	if !metav1.IsControlledBy(&secret, store) {
		return stepResult{
			status: metav1.ConditionFalse, reason: ReasonKeySecretConflict, outcome: outcomeStalled,
			requeueAfter: jitter(r.StalledRecheckInterval),
			message: fmt.Sprintf("Secret %q exists but is not controlled by this SmaregiStore; the operator will not overwrite it: "+
				"delete or rename it", name),
		}, nil
	}

	actions := layoutKeySecret(&secret, store, param, now, r.KeyRotationGrace)
	if len(actions) > 0 {
		// Update carries the resourceVersion we read: a stale cache or a
		// concurrent writer gets a conflict instead of a double rotation.
		if err := r.Client.Update(ctx, &secret); err != nil {
			return retrying(fmt.Errorf("update key Secret %s/%s: %w", store.Namespace, name, err)), nil
		}
		for _, a := range actions {
			r.Recorder.Eventf(store, &secret, corev1.EventTypeNormal, a.reason, a.action, a.note)
		}
	}

	status := &smaregiv1alpha1.ReceiverStatus{
		URL:           strings.TrimRight(r.ReceiverBaseURL, "/") + smaregiv1alpha1.ReceiverPathPrefix + string(store.UID),
		RouteID:       string(store.UID),
		KeySecretRef:  &smaregiv1alpha1.SecretKeyReference{Name: name, Key: param},
		ParameterName: param,
		LastRotation:  secret.Annotations[RotatedForAnnotation],
	}
	res := stepResult{
		status: metav1.ConditionTrue, reason: smaregiv1alpha1.ReasonKeyProvisioned, outcome: outcomeOK,
		message: fmt.Sprintf("in Smaregi's API送信設定 set 送信URL to %s and add パラメータ情報 %q with the value of key %q in Secret %q",
			status.URL, param, param, name),
	}
	if _, ok := secret.Data[param+smaregiv1alpha1.PreviousKeySuffix]; ok {
		// layoutKeySecret removed an expired or unreadable expiry, so this
		// parses and lies in the future.
		exp, _ := time.Parse(time.RFC3339, secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
		status.PreviousKeyExpiresAt = &metav1.Time{Time: exp}
		res.reason = smaregiv1alpha1.ReasonKeyRotating
		res.message = fmt.Sprintf("receiver key rotated: put the new value of key %q in Secret %q into パラメータ情報 %q in Smaregi's "+
			"API送信設定 before %s, when the previous key stops being accepted", param, name, param, exp.Format(time.RFC3339))
		// Come back when the previous key expires to remove it.
		res.requeueAfter = exp.Sub(now) + time.Second
	}
	return res, status
}

// createKeySecret creates <name>-receiver-key with a fresh key. ok is false
// when the step must stop with res.
func (r *SmaregiStoreReconciler) createKeySecret(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, param string) (_ *corev1.Secret, res stepResult, ok bool) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      store.ReceiverKeySecretName(),
			Namespace: store.Namespace,
			Labels:    map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{param: newReceiverKey()},
	}
	// A fresh key already answers any rotation asked for so far.
	if v := store.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; v != "" {
		secret.Annotations = map[string]string{RotatedForAnnotation: v}
	}
	if err := controllerutil.SetControllerReference(store, secret, r.Scheme); err != nil {
		return nil, retrying(fmt.Errorf("set owner of key Secret: %w", err)), false
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
		"created receiver key in Secret %q under key %q", secret.Name, param)
	return secret, stepResult{}, true
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
			actions = append(actions, keyAction{"KeyMoved", "MoveKey",
				fmt.Sprintf("receiver key moved from key %q to %q after spec.receiver.parameterName changed", old, param)})
		} else {
			secret.Data[param] = newReceiverKey()
			actions = append(actions, keyAction{smaregiv1alpha1.ReasonKeyProvisioned, "ProvisionKey",
				fmt.Sprintf("receiver key was missing from Secret %q; generated a new one under key %q", secret.Name, param)})
		}
	}

	if want := store.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; want != "" && want != secret.Annotations[RotatedForAnnotation] {
		expires := now.Add(grace).UTC().Truncate(time.Second)
		secret.Data[prevKey] = secret.Data[param]
		secret.Data[param] = newReceiverKey()
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[RotatedForAnnotation] = want
		secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation] = expires.Format(time.RFC3339)
		actions = append(actions, keyAction{"KeyRotated", "RotateKey",
			fmt.Sprintf("receiver key rotated (rotate-key %q); the previous key stays valid under %q until %s", want, prevKey, expires.Format(time.RFC3339))})
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
