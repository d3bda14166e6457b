// Command kubectl-smaregi is a kubectl plugin for shops on the Smaregi POS.
// `kubectl smaregi setup NAME` prints what the shop must enter in Smaregi's
// admin screens for the SmaregiStore NAME, with the receiver URL and key
// filled in; `kubectl smaregi status [-A]` lists the stores' health.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/setupguide"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitNotReady = 2
)

// kubeFlags are the kubectl-style connection flags.
type kubeFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

// clientConfig applies the standard loading rules (KUBECONFIG, then
// ~/.kube/config; --kubeconfig wins) and the flag overrides, like kubectl.
func (f *kubeFlags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.context}
	overrides.Context.Namespace = f.namespace
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// connectFunc returns a reader for the cluster and the namespace to use.
// Tests replace it with a fake.
type connectFunc func(f *kubeFlags) (client.Reader, string, error)

func connect(f *kubeFlags) (client.Reader, string, error) {
	cc := f.clientConfig()
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("find the namespace from kubeconfig: %w", err)
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, "", fmt.Errorf("build scheme: %w", err)
	}
	if err := smaregiv1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", fmt.Errorf("build scheme: %w", err)
	}
	c, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("create a Kubernetes client: %w", err)
	}
	return c, ns, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, connect))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer, conn connectFunc) int {
	root := newRootCommand(stdout, conn)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	_, _ = fmt.Fprintln(stderr, "error:", err)
	if _, notReady := errors.AsType[*setupguide.NotReadyError](err); notReady {
		return exitNotReady
	}
	return exitError
}

func newRootCommand(stdout io.Writer, conn connectFunc) *cobra.Command {
	flags := &kubeFlags{}
	root := &cobra.Command{
		Use:   "kubectl-smaregi",
		Short: "Help shops on the Smaregi POS connect to the smaregi-operator",
		Annotations: map[string]string{
			// Help and usage then read "kubectl smaregi", as users type it.
			cobra.CommandDisplayNameAnnotation: "kubectl smaregi",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&flags.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	pf.StringVar(&flags.context, "context", "", "kubeconfig context to use (default: the current context)")
	pf.StringVarP(&flags.namespace, "namespace", "n", "", "namespace of the SmaregiStore (default: the context's namespace)")

	setup := &cobra.Command{
		Use:   "setup NAME",
		Short: "Print what to enter in Smaregi's admin screens for a SmaregiStore",
		Long: `Print, in the order of Smaregi's admin screens, what the shop must enter so that
Smaregi talks to the smaregi-operator instead of GoQSystem:

  A. API受信設定 (API receive settings): switch on the receive function, issue the
     access token, check 契約ID and URL, put the token into the Kubernetes Secret
     named by spec.credentialsRef, switch on 4 在庫情報更新 and 15 在庫情報参照.
  B. API送信設定 (API send settings): the send URL (status.receiver.url), the
     parameter (spec.receiver.parameterName, default goqsystem_key) and its value
     from the store's receiver key Secret, and 5 取引情報送信 with 個別設定.

The output contains the receiver key, a secret: show it only to the shop.
It never contains the access token; the command only reads, it changes nothing.

For a Platform store (spec.api: Platform) it prints instead the app to create in
Smaregi's developer console (scopes), its installation for the contract, the
credentials Secret (clientID, clientSecret) and the app's webhook URL, header and
the command that reads the operator-wide webhook key (the key itself is not printed).

You need get on smaregistores and on the receiver key Secret in the namespace.

Exit status: 0 printed; 2 the store has no receiver URL or key yet (the output
says what is missing and the store's Ready condition); 1 any other error.`,
		Example: `  kubectl smaregi setup shibuya -n shops
  kubectl smaregi setup shibuya --kubeconfig ./prod.kubeconfig --context prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reader, ns, err := conn(flags)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			in, err := loadInput(ctx, reader, types.NamespacedName{Namespace: ns, Name: args[0]})
			if err != nil {
				return err
			}
			return setupguide.Render(stdout, in)
		},
	}
	root.AddCommand(setup, newStatusCommand(stdout, conn, flags, time.Now))
	return root
}

// loadInput reads the store and its receiver key Secret. A missing Secret
// is not an error here: the guide says it is missing.
func loadInput(ctx context.Context, r client.Reader, key types.NamespacedName) (setupguide.Input, error) {
	var store smaregiv1alpha1.SmaregiStore
	if err := r.Get(ctx, key, &store); err != nil {
		if apierrors.IsNotFound(err) {
			return setupguide.Input{}, fmt.Errorf("SmaregiStore %s not found (wrong name, or use -n NAMESPACE)", key)
		}
		return setupguide.Input{}, fmt.Errorf("read SmaregiStore %s: %w", key, err)
	}
	in := setupguide.Input{Store: &store}
	var list smaregiv1alpha1.SmaregiStoreList
	if err := r.List(ctx, &list, client.InNamespace(key.Namespace)); err != nil {
		return setupguide.Input{}, fmt.Errorf("list the SmaregiStores in %s: %w", key.Namespace, err)
	}
	for _, s := range list.Items {
		if s.Spec.ContractID == store.Spec.ContractID && s.Name != store.Name {
			in.ContractStores = append(in.ContractStores, s)
		}
	}
	if store.IsPlatform() {
		// The webhook key is the operator's, outside the namespace: the
		// guide prints how to read it rather than reading it.
		return in, nil
	}
	_, secretName, _ := store.ReceiverKeyLocation()
	var secret corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: secretName}, &secret)
	switch {
	case err == nil:
		in.KeySecret = &secret
	case apierrors.IsNotFound(err):
	case apierrors.IsForbidden(err):
		return setupguide.Input{}, fmt.Errorf("read the receiver key Secret %s/%s: you may not get Secrets there; ask for that right or for the key: %w",
			key.Namespace, secretName, err)
	default:
		return setupguide.Input{}, fmt.Errorf("read the receiver key Secret %s/%s: %w", key.Namespace, secretName, err)
	}
	return in, nil
}
