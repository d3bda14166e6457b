package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// storeStatus is one line of `kubectl smaregi status`, and one item of its
// -o json|yaml output: what an operator checks first about a store, taken
// from its status (conditions and status.inventory).
type storeStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ready is the Ready condition's status (True, False, Unknown), empty
	// before the controller set it.
	Ready  string `json:"ready"`
	Reason string `json:"reason,omitempty"`
	SKUs   int64  `json:"skus"`
	Drift  int64  `json:"drift"`
	// LastPullTime is the last successful pull; the table shows its age.
	LastPullTime *metav1.Time `json:"lastPullTime,omitempty"`
	LastSendTime *metav1.Time `json:"lastSendTime,omitempty"`
	// PendingAdjustments accepted and not yet settled, and when the oldest
	// of them was accepted.
	PendingAdjustments          int64        `json:"pendingAdjustments"`
	OldestPendingAdjustmentTime *metav1.Time `json:"oldestPendingAdjustmentTime,omitempty"`
}

type statusList struct {
	Items []storeStatus `json:"items"`
}

func newStatusCommand(stdout io.Writer, conn connectFunc, flags *kubeFlags, now func() time.Time) *cobra.Command {
	var allNamespaces bool
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One line per SmaregiStore: ready, reason, SKUs, drift, mirror age, last send, pending adjustments",
		Long: `List the SmaregiStores of the namespace (-A: of every namespace) with what to check
first: the Ready condition and its reason, the SKUs and drift of the stock mirror, the
age of the mirror (since the last successful pull) and of the last send from Smaregi,
and the adjustments not yet applied with the age of the oldest.

-o json or -o yaml prints the same as data, with times instead of ages.
You need list on smaregistores.`,
		Example: `  kubectl smaregi status -n shops
  kubectl smaregi status -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("unknown output format %q: want json or yaml", output)
			}
			reader, ns, err := conn(flags)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			list, err := listStatus(ctx, reader, ns, allNamespaces)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				b, err := json.MarshalIndent(list, "", "  ")
				if err != nil {
					return fmt.Errorf("encode JSON: %w", err)
				}
				_, err = fmt.Fprintf(stdout, "%s\n", b)
				return err
			case "yaml":
				b, err := yaml.Marshal(list)
				if err != nil {
					return fmt.Errorf("encode YAML: %w", err)
				}
				_, err = stdout.Write(b)
				return err
			}
			return printStatusTable(stdout, list, allNamespaces, now())
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list the SmaregiStores of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

func listStatus(ctx context.Context, r client.Reader, ns string, all bool) (statusList, error) {
	var stores smaregiv1alpha1.SmaregiStoreList
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := r.List(ctx, &stores, opts...); err != nil {
		where := "namespace " + ns
		if all {
			where = "all namespaces"
		}
		return statusList{}, fmt.Errorf("list SmaregiStores in %s: %w", where, err)
	}
	list := statusList{Items: []storeStatus{}}
	for i := range stores.Items {
		list.Items = append(list.Items, statusOf(&stores.Items[i]))
	}
	slices.SortFunc(list.Items, func(a, b storeStatus) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return list, nil
}

func statusOf(s *smaregiv1alpha1.SmaregiStore) storeStatus {
	st := storeStatus{Namespace: s.Namespace, Name: s.Name}
	if c := meta.FindStatusCondition(s.Status.Conditions, smaregiv1alpha1.ReadyCondition); c != nil {
		st.Ready, st.Reason = string(c.Status), c.Reason
	}
	if inv := s.Status.Inventory; inv != nil {
		st.SKUs, st.Drift = inv.SKUs, inv.Drift
		st.LastPullTime, st.LastSendTime = inv.LastPullTime, inv.LastSendTime
		st.PendingAdjustments, st.OldestPendingAdjustmentTime = inv.PendingAdjustments, inv.OldestPendingAdjustmentTime
	}
	return st
}

func printStatusTable(w io.Writer, list statusList, allNamespaces bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := "NAME\tREADY\tREASON\tSKUS\tDRIFT\tMIRROR AGE\tLAST SEND\tPENDING\tOLDEST PENDING"
	if allNamespaces {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for _, s := range list.Items {
		row := fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s", s.Name, orDash(s.Ready), orDash(s.Reason), s.SKUs, s.Drift,
			age(s.LastPullTime, now), age(s.LastSendTime, now), s.PendingAdjustments, age(s.OldestPendingAdjustmentTime, now))
		if allNamespaces {
			row = s.Namespace + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	if len(list.Items) == 0 {
		_, err := fmt.Fprintln(w, "No SmaregiStores found.")
		return err
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is kubectl's short age ("5m", "3h10m"), "-" when the time is unset.
func age(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
