package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

const (
	testURL = "https://stock.example.test/smaregi/v1/0d9c8b7a-6f5e-4d3c-2b1a-098765432100"
	testKey = "rk_Test_1a2B3c4D5e6F7g8H"
)

func objects(withKey bool) []client.Object {
	st := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya"},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{ContractID: "sb_abc123", StoreID: "1",
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "shibuya-smaregi"}},
	}
	if !withKey {
		st.Status.Conditions = []metav1.Condition{{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionFalse,
			Reason: smaregiv1alpha1.ReasonProgressing, Message: "creating the receiver key"}}
		return []client.Object{st}
	}
	st.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{URL: testURL, RouteID: "0d9c8b7a-6f5e-4d3c-2b1a-098765432100",
		ParameterName: "goqsystem_key"}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya-receiver-key"},
		Data:       map[string][]byte{"goqsystem_key": []byte(testKey)},
	}
	return []client.Object{st, sec}
}

func fakeConnect(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) (connectFunc, *kubeFlags) {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := smaregiv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	c := b.Build()
	seen := &kubeFlags{}
	return func(f *kubeFlags) (client.Reader, string, error) {
		*seen = *f
		ns := f.namespace
		if ns == "" {
			ns = "default"
		}
		return c, ns, nil
	}, seen
}

func TestSetupPrintsGuide(t *testing.T) {
	conn, seen := fakeConnect(t, nil, objects(true)...)
	var out, errOut bytes.Buffer
	code := run([]string{"setup", "shibuya", "-n", "shops", "--kubeconfig", "/nonexistent"}, &out, &errOut, conn)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if seen.namespace != "shops" || seen.kubeconfig != "/nonexistent" {
		t.Errorf("flags not passed on: %+v", seen)
	}
	for _, want := range []string{"[スマレジAPI設定]", testURL, "goqsystem_key", testKey, "kubectl create secret generic shibuya-smaregi -n shops"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSetupNotReadyExitsTwo(t *testing.T) {
	conn, _ := fakeConnect(t, nil, objects(false)...)
	var out, errOut bytes.Buffer
	code := run([]string{"setup", "shibuya", "-n", "shops"}, &out, &errOut, conn)
	if code != exitNotReady {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitNotReady, errOut.String())
	}
	for _, want := range []string{"status.receiver.url is empty", "shibuya-receiver-key does not exist", "creating the receiver key"} {
		if !strings.Contains(errOut.String(), want) || !strings.Contains(out.String(), want) {
			t.Errorf("%q not said on stdout and stderr:\n%s\n%s", want, out.String(), errOut.String())
		}
	}
}

func TestSetupErrors(t *testing.T) {
	forbidden := &interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Secret); ok {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, key.Name, errors.New("RBAC"))
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	cases := map[string]struct {
		funcs *interceptor.Funcs
		args  []string
		want  string
	}{
		"no name":         {args: []string{"setup"}, want: "accepts 1 arg"},
		"unknown store":   {args: []string{"setup", "nope", "-n", "shops"}, want: "SmaregiStore shops/nope not found"},
		"wrong namespace": {args: []string{"setup", "shibuya"}, want: "SmaregiStore default/shibuya not found"},
		"secret forbidden": {funcs: forbidden, args: []string{"setup", "shibuya", "-n", "shops"},
			want: "you may not get Secrets there"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			conn, _ := fakeConnect(t, tc.funcs, objects(true)...)
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut, conn); code != exitError {
				t.Fatalf("exit %d, want %d", code, exitError)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.want)
			}
			if strings.Contains(out.String(), testKey) {
				t.Error("the key was printed although the command failed")
			}
		})
	}
}

func TestHelp(t *testing.T) {
	conn, _ := fakeConnect(t, nil)
	var out, errOut bytes.Buffer
	if code := run([]string{"setup", "--help"}, &out, &errOut, conn); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"kubectl smaregi setup NAME", "--namespace", "--kubeconfig", "Exit status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestNamespaceFromKubeconfig checks the loading rules without a cluster:
// the context's namespace by default, -n over it, --kubeconfig over
// KUBECONFIG.
func TestNamespaceFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, ns string) string {
		p := filepath.Join(dir, name)
		cfg := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: "x"}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: ` + ns + `}
- name: other
  context: {cluster: c, user: u, namespace: elsewhere}
current-context: ctx
`
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := write("env", "from-env")
	explicit := write("explicit", "from-flag-file")
	t.Setenv("KUBECONFIG", env)

	cases := []struct {
		flags kubeFlags
		want  string
	}{
		{kubeFlags{}, "from-env"},
		{kubeFlags{kubeconfig: explicit}, "from-flag-file"},
		{kubeFlags{namespace: "shops"}, "shops"},
		{kubeFlags{context: "other"}, "elsewhere"},
	}
	for _, tc := range cases {
		ns, _, err := tc.flags.clientConfig().Namespace()
		if err != nil {
			t.Fatal(err)
		}
		if ns != tc.want {
			t.Errorf("flags %+v: namespace %q, want %q", tc.flags, ns, tc.want)
		}
	}
}
