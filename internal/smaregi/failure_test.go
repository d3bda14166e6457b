package smaregi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

func TestConfigErrorsAreReturnedAtOnce(t *testing.T) {
	cases := []struct {
		name            string
		contract, token string
		account         smaregisim.Account
		codeStr         bool
		want            int
	}{
		{name: "wrong token", token: "tok-wrong-" + testToken, want: smaregi.CodeInvalidAccessToken},
		{name: "wrong contract", contract: "other", want: smaregi.CodeInvalidContractID},
		{name: "locked", account: smaregisim.Account{Locked: true}, want: smaregi.CodeAccountLocked},
		{name: "function disabled", account: smaregisim.Account{DisabledFunctions: []string{"stock_ref"}}, want: smaregi.CodeFunctionDisabled},
		{name: "ip not allowed", account: smaregisim.Account{AllowedIPs: []string{"192.0.2.1"}}, want: smaregi.CodeIPNotAllowed},
		{name: "code as string", account: smaregisim.Account{Locked: true}, codeStr: true, want: smaregi.CodeAccountLocked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startSim(t, func(o *smaregisim.Options) { o.Behaviour.ErrorCodeAsString = tc.codeStr })
			if err := e.sim.SetAccount(tc.account); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, e.Endpoint(), func(o *smaregi.Options) {
				if tc.contract != "" {
					o.ContractID = tc.contract
				}
				if tc.token != "" {
					o.AccessToken = tc.token
				}
			})
			before := requestCount(t, smaregi.ProcStockRef, smaregi.OutcomeConfigError)
			err := c.CheckCredentials(context.Background(), "1")
			assertNoToken(t, err)
			if strings.Contains(err.Error(), tc.token) && tc.token != "" {
				t.Fatalf("error shows the wrong token: %v", err)
			}
			if !smaregi.IsConfigError(err) || smaregi.IsTransient(err) || smaregi.IsAmbiguous(err) {
				t.Fatalf("classification of %v: config=%v transient=%v ambiguous=%v", err,
					smaregi.IsConfigError(err), smaregi.IsTransient(err), smaregi.IsAmbiguous(err))
			}
			if code, ok := smaregi.ErrorCode(err); !ok || code != tc.want {
				t.Fatalf("ErrorCode = %d, %v; want %d", code, ok, tc.want)
			}
			var ae *smaregi.APIError
			if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusBadRequest || ae.ProcName != smaregi.ProcStockRef || ae.Message == "" {
				t.Fatalf("APIError = %+v", ae)
			}
			if n := len(e.Calls()); n != 1 {
				t.Fatalf("%d calls, want 1: config errors are not retried", n)
			}
			if got := requestCount(t, smaregi.ProcStockRef, smaregi.OutcomeConfigError); got != before+1 {
				t.Fatalf("config_error counter went from %v to %v", before, got)
			}
		})
	}
}

// requestCount reads smaregi_client_requests_total from controller-runtime's
// registry, where the manager's /metrics endpoint would serve it.
func requestCount(t *testing.T, proc, outcome string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "smaregi_client_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["proc_name"] == proc && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// failFirst makes the simulator answer the first calls with the given
// faults, then normally.
func failFirst(e *env, faults ...smaregisim.Faults) {
	e.SetHook(func(n int, _ recordedCall) {
		if n <= len(faults) {
			_ = e.sim.SetFaults(faults[n-1])
		} else {
			_ = e.sim.SetFaults(smaregisim.Faults{})
		}
	})
}

func TestReadRetriesTransientErrorsThenSucceeds(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 5 })
	failFirst(e, smaregisim.Faults{HTMLErrorRate: 1}, smaregisim.Faults{ErrorRate: 1})
	c := newClient(t, e.Endpoint(), nil)
	before := requestCount(t, smaregi.ProcStockRef, smaregi.OutcomeTransient)
	rows, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 || len(e.Calls()) != 3 {
		t.Fatalf("rows = %d, calls = %d; want 5 rows after 3 calls", len(rows), len(e.Calls()))
	}
	if got := requestCount(t, smaregi.ProcStockRef, smaregi.OutcomeTransient); got != before+2 {
		t.Fatalf("transient counter went from %v to %v, want +2", before, got)
	}
}

func TestReadGivesUpAfterMaxAttempts(t *testing.T) {
	cases := []struct {
		name   string
		faults smaregisim.Faults
		status int
		code   int
		text   string
	}{
		{"html 502", smaregisim.Faults{HTMLErrorRate: 1}, http.StatusBadGateway, 0, "502 Bad Gateway"},
		{"json 503", smaregisim.Faults{ErrorRate: 1}, http.StatusServiceUnavailable, smaregi.CodeQueryFailed, "temporary failure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startSim(t, nil)
			if err := e.sim.SetFaults(tc.faults); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.MaxReadAttempts = 3 })
			_, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"})
			assertNoToken(t, err)
			if !smaregi.IsTransient(err) || smaregi.IsConfigError(err) || smaregi.IsAmbiguous(err) {
				t.Fatalf("%v: want transient only", err)
			}
			var ae *smaregi.APIError
			if !errors.As(err, &ae) || ae.HTTPStatus != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.text) {
				t.Fatalf("APIError = %+v, want status %d code %d text %q", ae, tc.status, tc.code, tc.text)
			}
			if n := len(e.Calls()); n != 3 {
				t.Fatalf("%d calls, want 3 attempts", n)
			}
		})
	}
}

func TestWriteFailuresAreNeverRetried(t *testing.T) {
	cases := []struct {
		name      string
		faults    smaregisim.Faults
		transient bool
		ambiguous bool
		applied   bool
	}{
		// A coded 5xx: nothing says it was not applied (here it was not).
		{"json 503", smaregisim.Faults{ErrorRate: 1}, false, true, false},
		// Applied, then a coded 5xx: a server that committed and failed.
		{"json 503 after applying", smaregisim.Faults{AppliedErrorRate: 1}, false, true, true},
		// A gateway page: the write may have gone through behind it.
		{"html 502", smaregisim.Faults{HTMLErrorRate: 1}, false, true, false},
		// Applied, then the connection was closed without an answer.
		{"lost response", smaregisim.Faults{LostResponseRate: 1}, false, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startSim(t, nil)
			if err := e.sim.SetFaults(tc.faults); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, e.Endpoint(), nil)
			before := requestCount(t, smaregi.ProcStockUpd, smaregi.OutcomeAmbiguous)
			_, err := c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: pid(0), Amount: -3}})
			assertNoToken(t, err)
			if smaregi.IsTransient(err) != tc.transient || smaregi.IsAmbiguous(err) != tc.ambiguous || smaregi.IsConfigError(err) {
				t.Fatalf("%v: transient=%v ambiguous=%v, want %v %v", err, smaregi.IsTransient(err), smaregi.IsAmbiguous(err), tc.transient, tc.ambiguous)
			}
			var ue *smaregi.UpdateError
			if !errors.As(err, &ue) || ue.Applied != 0 || ue.Batch != 0 || ue.Batches != 1 {
				t.Fatalf("UpdateError = %+v", ue)
			}
			if n := e.CallCount(smaregi.ProcStockUpd); n != 1 {
				t.Fatalf("%d stock_upd calls, want exactly 1", n)
			}
			got, _ := e.sim.StockOf("1", pid(0))
			if want := map[bool]int64{true: 7, false: 10}[tc.applied]; got != want {
				t.Fatalf("stock = %d, want %d", got, want)
			}
			wantAmb := before
			if tc.ambiguous {
				wantAmb++
			}
			if got := requestCount(t, smaregi.ProcStockUpd, smaregi.OutcomeAmbiguous); got != wantAmb {
				t.Fatalf("ambiguous counter = %v, want %v", got, wantAmb)
			}
		})
	}
}

// TestLostResponseInTheMiddleBatch loses the answer to batch 2 of 3: batch 1
// is known applied, batch 2 is ambiguous (and in fact applied), batch 3 is
// never sent.
func TestLostResponseInTheMiddleBatch(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 1300 })
	upd := 0
	e.SetHook(func(_ int, c recordedCall) {
		if c.proc != smaregi.ProcStockUpd {
			return
		}
		upd++
		f := smaregisim.Faults{}
		if upd == 2 {
			f.LostResponseRate = 1
		}
		_ = e.sim.SetFaults(f)
	})
	rows := make([]smaregi.StockUpdate, 1201)
	for i := range rows {
		rows[i] = smaregi.StockUpdate{StoreID: "1", ProductID: pid(i), Amount: 1}
	}
	c := newClient(t, e.Endpoint(), nil)
	_, err := c.UpdateStock(context.Background(), smaregi.Relative, rows)
	assertNoToken(t, err)
	var ue *smaregi.UpdateError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UpdateError", err)
	}
	if ue.Applied != 1 || ue.Batch != 1 || ue.Batches != 3 || ue.FirstRow != 500 || ue.EndRow != 1000 {
		t.Fatalf("UpdateError = %+v", ue)
	}
	if !smaregi.IsAmbiguous(err) || smaregi.IsTransient(err) {
		t.Fatalf("%v: want ambiguous", err)
	}
	var te *smaregi.TransportError
	if !errors.As(err, &te) || !te.MaybeSent {
		t.Fatalf("want a TransportError with MaybeSent, got %#v", errors.Unwrap(err))
	}
	if n := e.CallCount(smaregi.ProcStockUpd); n != 2 {
		t.Fatalf("%d stock_upd calls, want 2 (batch 3 must not be sent)", n)
	}
	for i, want := range map[int]int64{0: 11, 499: 11, 500: 11, 999: 11, 1000: 10, 1200: 10} {
		if got, _ := e.sim.StockOf("1", pid(i)); got != want {
			t.Fatalf("row %d: stock %d, want %d", i, got, want)
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String() + "/access/"
	_ = ln.Close()
	c := newClient(t, endpoint, func(o *smaregi.Options) { o.MaxReadAttempts = 2 })

	err = c.CheckCredentials(context.Background(), "1")
	assertNoToken(t, err)
	var te *smaregi.TransportError
	if !smaregi.IsTransient(err) || !errors.As(err, &te) || te.MaybeSent {
		t.Fatalf("read: %v, want transient and not sent", err)
	}
	_, err = c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: pid(0), Amount: 1}})
	assertNoToken(t, err)
	if !smaregi.IsTransient(err) || smaregi.IsAmbiguous(err) {
		t.Fatalf("write: %v, want transient, not ambiguous: nothing was sent", err)
	}
}

func TestTimeouts(t *testing.T) {
	e := startSim(t, nil)
	if err := e.sim.SetFaults(smaregisim.Faults{LatencyMs: 2000}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) {
		o.RequestTimeout = 50 * time.Millisecond
		o.MaxReadAttempts = 2
	})
	err := c.CheckCredentials(context.Background(), "1")
	assertNoToken(t, err)
	if !smaregi.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v, want a transient deadline error", err)
	}
	if n := len(e.Calls()); n != 2 {
		t.Fatalf("%d read attempts, want 2", n)
	}
	_, err = c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: pid(0), Amount: 1}})
	assertNoToken(t, err)
	if !smaregi.IsAmbiguous(err) || smaregi.IsTransient(err) {
		t.Fatalf("write: %v, want ambiguous: the request was sent", err)
	}
	if n := e.CallCount(smaregi.ProcStockUpd); n != 1 {
		t.Fatalf("%d stock_upd calls, want 1", n)
	}
}

func TestInvalidInputIsADefiniteFailure(t *testing.T) {
	e := startSim(t, nil)
	c := newClient(t, e.Endpoint(), nil)
	_, err := c.UpdateStock(context.Background(), smaregi.Absolute, []smaregi.StockUpdate{
		{StoreID: "1", ProductID: pid(0), Amount: 3},
		{StoreID: "1", ProductID: "9999999", Amount: 3},
	})
	assertNoToken(t, err)
	if code, _ := smaregi.ErrorCode(err); code != smaregi.CodeInvalidInputData {
		t.Fatalf("%v: code %d, want 41", err, code)
	}
	if smaregi.IsTransient(err) || smaregi.IsAmbiguous(err) || smaregi.IsConfigError(err) {
		t.Fatalf("%v: want a definite, non-config failure", err)
	}
	if got, _ := e.sim.StockOf("1", pid(0)); got != 10 {
		t.Fatalf("stock = %d: the rejected call changed stock", got)
	}
	// Checked before sending: nothing goes out for a malformed row.
	_, err = c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: "x1", Amount: 1}})
	if err == nil || e.CallCount(smaregi.ProcStockUpd) != 1 {
		t.Fatalf("malformed row: err=%v, calls=%d", err, e.CallCount(smaregi.ProcStockUpd))
	}
}

// TestTokenEchoedByServerIsRedacted uses a narrow fake: a server that puts
// the caller's token into its error text must not leak it further.
func TestTokenEchoedByServerIsRedacted(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error_code":"13","error":"invalid_access_token","error_description":"token ` + r.Header.Get("X_access_token") + ` is not valid"}`))
	}))
	defer hs.Close()
	c := newClient(t, hs.URL+"/access/", nil)
	err := c.CheckCredentials(context.Background(), "1")
	assertNoToken(t, err)
	if !strings.Contains(err.Error(), "[redacted]") || !smaregi.IsConfigError(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestRateLimiterWaitCancelledIsNotSent(t *testing.T) {
	e := startSim(t, nil)
	reg := smaregi.NewLimiterRegistry(0.001, 1)
	if reg.For(testContract) != reg.For(testContract) || reg.For(testContract) == reg.For("other") {
		t.Fatal("limiters must be shared per contract and only per contract")
	}
	c1 := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.Limiters = reg })
	c2 := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.Limiters = reg })
	if err := c1.CheckCredentials(context.Background(), "1"); err != nil {
		t.Fatal(err)
	}
	// The contract's one token is spent: the second client (another store
	// of the same contract) must wait, and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c2.UpdateStock(ctx, smaregi.Relative, []smaregi.StockUpdate{{StoreID: "2", ProductID: pid(0), Amount: 1}})
	if err == nil || smaregi.IsAmbiguous(err) || !smaregi.IsTransient(err) {
		t.Fatalf("err = %v, want transient and not ambiguous", err)
	}
	if n := len(e.Calls()); n != 1 {
		t.Fatalf("%d calls reached the server, want 1", n)
	}
}

func TestNewValidates(t *testing.T) {
	bad := []smaregi.Options{
		{Endpoint: "webapi.smaregi.jp/access/", ContractID: "c", AccessToken: testToken},
		{Endpoint: "ftp://webapi.smaregi.jp/access/", ContractID: "c", AccessToken: testToken},
		{Endpoint: "https://user:" + testToken + "@webapi.smaregi.jp/access/", ContractID: "c", AccessToken: testToken},
		{Endpoint: "https://webapi.smaregi.jp/access/", ContractID: "", AccessToken: testToken},
		{Endpoint: "https://webapi.smaregi.jp/access/", ContractID: "c", AccessToken: ""},
		{Endpoint: "https://webapi.smaregi.jp/access/", ContractID: "c", AccessToken: testToken + "\n"},
		{Endpoint: "://" + testToken, ContractID: "c", AccessToken: testToken},
	}
	for i, o := range bad {
		_, err := smaregi.New(o)
		if err == nil {
			t.Fatalf("options %d accepted", i)
		}
		assertNoToken(t, err)
	}
	if _, err := smaregi.New(smaregi.Options{ContractID: "c", AccessToken: testToken}); err != nil {
		t.Fatalf("default endpoint: %v", err)
	}
}

func TestRetryBackoffStopsWithContext(t *testing.T) {
	e := startSim(t, nil)
	if err := e.sim.SetFaults(smaregisim.Faults{HTMLErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) {
		o.Backoff = smaregi.Backoff{Initial: time.Hour, Max: time.Hour}
		o.MaxReadAttempts = 5
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.CheckCredentials(ctx, "1")
	if !smaregi.IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the transient failure and the context's deadline", err)
	}
	if n := len(e.Calls()); n != 1 {
		t.Fatalf("%d calls, want 1 before the context ended", n)
	}
}
