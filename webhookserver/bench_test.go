package webhookserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// BenchmarkHandlerStockSend measures accepted stock_sends per second through
// the handler in process (authentication, parsing, routing, RecordingSink),
// with the fake client standing in for the manager's cache.
func BenchmarkHandlerStockSend(b *testing.B) {
	h := newHarness(b, nil)
	handler := h.srv.Handler()
	body := sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA).Encode()
	target := smaregiv1alpha1.ReceiverPathPrefix + routeA
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
	if h.sink.Len() != b.N {
		b.Fatalf("sink holds %d sends, want %d", h.sink.Len(), b.N)
	}
	h.sink.Reset()
}

// BenchmarkHTTPStockSend measures the same over real HTTP on 127.0.0.1 with
// keep-alive connections, as Smaregi would reach one replica.
func BenchmarkHTTPStockSend(b *testing.B) {
	h := newHarness(b, nil)
	form := sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)
	target := h.url(routeA)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.PostForm(target, url.Values(form))
			if err != nil {
				b.Fatal(err)
			}
			// Draining the body lets the connection be reused.
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
	h.sink.Reset()
}
