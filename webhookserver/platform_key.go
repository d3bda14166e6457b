package webhookserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// keyBytes is the entropy of a generated receiver or webhook key (256 bits).
const keyBytes = 32

// NewKey returns a fresh random key, base64url without padding (43
// characters: safe in a form field, a header value and a URL path segment).
// crypto/rand.Read cannot fail (it aborts the program instead), so there is
// no error to handle.
func NewKey() []byte {
	b := make([]byte, keyBytes)
	_, _ = rand.Read(b)
	return []byte(base64.RawURLEncoding.EncodeToString(b))
}

// MinPlatformKeyLen is the shortest webhook key the receiver accepts from a
// Secret that the operator did not generate (an administrator's own key):
// anything shorter could be guessed.
const MinPlatformKeyLen = 16

// Defaults of PlatformKeysOptions.
const (
	DefaultPlatformKeyRefresh = time.Minute
	DefaultPlatformKeyGrace   = 24 * time.Hour
)

// PlatformKeysOptions configure PlatformKeys. Client, Reader and Secret are
// required.
type PlatformKeysOptions struct {
	// Client creates and updates the key Secret.
	Client client.Client
	// Reader reads it uncached (mgr.GetAPIReader()): the operator's
	// namespace need not be one of --watch-namespaces, so the manager's
	// cache may not hold it, and one Secret read a minute costs nothing.
	Reader client.Reader
	// Secret is the key Secret, in the operator's namespace.
	Secret types.NamespacedName
	// RefreshInterval between reads of the Secret; a deleted Secret is
	// re-created (with a new key) and a rotation is picked up within it.
	RefreshInterval time.Duration
	// RotationGrace is how long the key replaced by a rotation stays valid.
	RotationGrace time.Duration
	Clock         clock.PassiveClock
	Log           logr.Logger
}

// PlatformKeys keeps the operator-wide key of the Platform webhook URL: it
// creates the key Secret when it is missing, rotates the key when the
// Secret's rotate-key annotation asks for it, and holds digests of the
// current and (in its grace) previous key for the receiver. Every replica
// runs one: each serves webhooks, and creation and rotation are guarded by
// the API server (AlreadyExists, resourceVersion), so replicas agree.
//
// A Secret without the managed-by label is the administrator's own (a key
// from a secret manager, say): it is read, never written, and its key must
// be at least MinPlatformKeyLen bytes.
type PlatformKeys struct {
	opts PlatformKeysOptions
	log  logr.Logger
	set  atomic.Pointer[platformKeySet]
}

var (
	_ manager.Runnable               = (*PlatformKeys)(nil)
	_ manager.LeaderElectionRunnable = (*PlatformKeys)(nil)
)

// platformKeySet is what the receiver compares against: digests, so that the
// key itself is not kept beyond the Secret read.
type platformKeySet struct {
	current     [sha256.Size]byte
	previous    *[sha256.Size]byte
	prevExpires time.Time
}

// NewPlatformKeys checks opts and fills in defaults.
func NewPlatformKeys(opts PlatformKeysOptions) (*PlatformKeys, error) {
	if opts.Client == nil || opts.Reader == nil {
		return nil, errors.New("webhookserver: PlatformKeysOptions.Client and Reader are required")
	}
	if opts.Secret.Namespace == "" || opts.Secret.Name == "" {
		return nil, errors.New("webhookserver: PlatformKeysOptions.Secret needs a namespace and a name")
	}
	defaultDuration(&opts.RefreshInterval, DefaultPlatformKeyRefresh)
	defaultDuration(&opts.RotationGrace, DefaultPlatformKeyGrace)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logf.Log.WithName("platform-webhook-key")
	}
	return &PlatformKeys{opts: opts, log: opts.Log.WithValues("secret", opts.Secret.String())}, nil
}

// NeedLeaderElection returns false: every replica serves webhooks.
func (k *PlatformKeys) NeedLeaderElection() bool { return false }

// Secret names the key Secret.
func (k *PlatformKeys) Secret() types.NamespacedName { return k.opts.Secret }

// Start syncs the Secret at once and then every RefreshInterval until ctx
// is done. A failed sync keeps the keys last read: an API server hiccup
// must not make the receiver refuse Smaregi.
func (k *PlatformKeys) Start(ctx context.Context) error {
	t := time.NewTicker(k.opts.RefreshInterval)
	defer t.Stop()
	for {
		if err := k.Sync(ctx); err != nil && ctx.Err() == nil {
			k.log.Error(err, "cannot sync the Platform webhook key; keeping the key last read")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready reports whether a key has been read.
func (k *PlatformKeys) Ready() bool { return k.set.Load() != nil }

// match compares a key digest with the current and, in its grace, the
// previous key. ok is false before the first successful Sync.
func (k *PlatformKeys) match(gotSum [sha256.Size]byte) (v verdict, ok bool) {
	set := k.set.Load()
	if set == nil {
		return verdictWrong, false
	}
	// Both comparisons always run, so the answer's timing does not tell
	// which key matched.
	current := digestsMatch(gotSum, set.current)
	previous := set.previous != nil && digestsMatch(gotSum, *set.previous) &&
		k.opts.Clock.Now().Before(set.prevExpires)
	switch {
	case current:
		return verdictCurrent, true
	case previous:
		return verdictPrevious, true
	}
	return verdictWrong, true
}

// Sync reads the key Secret, creates it or brings it in line (new key when
// missing, rotation, expiry of the previous key) and loads its keys.
func (k *PlatformKeys) Sync(ctx context.Context) error {
	var secret corev1.Secret
	err := k.opts.Reader.Get(ctx, k.opts.Secret, &secret)
	switch {
	case apierrors.IsNotFound(err):
		created, err := k.create(ctx)
		if err != nil {
			return err
		}
		secret = *created
	case err != nil:
		return fmt.Errorf("get Platform webhook key Secret %s: %w", k.opts.Secret, err)
	}
	if secret.Labels[smaregiv1alpha1.ManagedByLabel] == smaregiv1alpha1.ManagedByValue {
		if changed, note := k.maintain(&secret); changed {
			// The resourceVersion read makes a concurrent replica's
			// rotation a conflict here instead of a second rotation.
			if err := k.opts.Client.Update(ctx, &secret); err != nil {
				return fmt.Errorf("update Platform webhook key Secret %s: %w", k.opts.Secret, err)
			}
			k.log.Info(note)
		}
	}
	set, err := k.keySet(&secret)
	if err != nil {
		return err
	}
	k.set.Store(set)
	return nil
}

func (k *PlatformKeys) create(ctx context.Context) (*corev1.Secret, error) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: k.opts.Secret.Namespace, Name: k.opts.Secret.Name,
			Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{smaregiv1alpha1.PlatformWebhookKeyKey: NewKey()},
	}
	err := k.opts.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		// Another replica was first: use its key.
		existing := &corev1.Secret{}
		if err := k.opts.Reader.Get(ctx, k.opts.Secret, existing); err != nil {
			return nil, fmt.Errorf("get Platform webhook key Secret %s: %w", k.opts.Secret, err)
		}
		return existing, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create Platform webhook key Secret %s: %w", k.opts.Secret, err)
	}
	k.log.Info("created the Platform webhook key; enter it in the app's webhook settings in Smaregi's developer console")
	return secret, nil
}

// maintain applies a missing key, a requested rotation and the expiry of
// the previous key to the operator's own Secret. It never puts a key into
// the returned note.
func (k *PlatformKeys) maintain(secret *corev1.Secret) (changed bool, note string) {
	const cur = smaregiv1alpha1.PlatformWebhookKeyKey
	const prev = cur + smaregiv1alpha1.PreviousKeySuffix
	now := k.opts.Clock.Now()
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	if len(secret.Data[cur]) == 0 {
		secret.Data[cur] = NewKey()
		changed, note = true, "the Platform webhook key was missing from its Secret; generated a new one"
	}
	if want := secret.Annotations[smaregiv1alpha1.RotateKeyAnnotation]; want != "" &&
		want != secret.Annotations[smaregiv1alpha1.RotatedForAnnotation] {
		expires := now.Add(k.opts.RotationGrace).UTC().Truncate(time.Second)
		secret.Data[prev] = secret.Data[cur]
		secret.Data[cur] = NewKey()
		metav1.SetMetaDataAnnotation(&secret.ObjectMeta, smaregiv1alpha1.RotatedForAnnotation, want)
		metav1.SetMetaDataAnnotation(&secret.ObjectMeta, smaregiv1alpha1.PreviousKeyExpiresAnnotation, expires.Format(time.RFC3339))
		changed, note = true, fmt.Sprintf("rotated the Platform webhook key; the previous one stays valid under %q until %s",
			prev, expires.Format(time.RFC3339))
	}
	if _, ok := secret.Data[prev]; ok && !previousValid(secret, now) {
		// An unreadable expiry counts as expired: accepting an old key
		// forever is the worse failure.
		delete(secret.Data, prev)
		delete(secret.Annotations, smaregiv1alpha1.PreviousKeyExpiresAnnotation)
		changed, note = true, "the previous Platform webhook key expired and was removed"
	}
	return changed, note
}

// keySet loads the digests of the Secret's keys.
func (k *PlatformKeys) keySet(secret *corev1.Secret) (*platformKeySet, error) {
	const cur = smaregiv1alpha1.PlatformWebhookKeyKey
	key := secret.Data[cur]
	if len(key) < MinPlatformKeyLen {
		return nil, fmt.Errorf("the Platform webhook key Secret %s has no key %q of at least %d bytes", k.opts.Secret, cur, MinPlatformKeyLen)
	}
	set := &platformKeySet{current: sha256.Sum256(key)}
	if prev := secret.Data[cur+smaregiv1alpha1.PreviousKeySuffix]; len(prev) >= MinPlatformKeyLen && previousValid(secret, k.opts.Clock.Now()) {
		sum := sha256.Sum256(prev)
		set.previous = &sum
		set.prevExpires, _ = time.Parse(time.RFC3339, secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
	}
	return set, nil
}

// previousValid reports whether the Secret's previous key is still in its
// grace; a missing or unreadable expiry means it is not.
func previousValid(secret *corev1.Secret, now time.Time) bool {
	exp, err := time.Parse(time.RFC3339, secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
	return err == nil && now.Before(exp)
}
