/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// Store IDs are compared with what Smaregi returns ("1"), so a form Smaregi
// never returns ("01") is refused when applied, with a clear error, instead
// of producing an empty mirror that looks healthy.
func TestStoreIDValidation(t *testing.T) {
	ns := newNamespace(t, "validation")
	for id, ok := range map[string]bool{"1": true, "0": true, "99999": true, "01": false, "100000": false, "": false, "1a": false} {
		st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s"}}
		st.Spec.ContractID, st.Spec.StoreID = "sk1", id
		st.Spec.CredentialsRef.Name = "creds"
		err := kube.Create(context.Background(), st, client.DryRunAll)
		switch {
		case ok && err != nil:
			t.Errorf("storeID %q refused: %v", id, err)
		case !ok && err == nil:
			t.Errorf("storeID %q accepted", id)
		case !ok && !strings.Contains(err.Error(), "spec.storeID"):
			t.Errorf("storeID %q refused without naming the field: %v", id, err)
		}
	}
}
