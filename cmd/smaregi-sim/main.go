// Command smaregi-sim runs the Smaregi simulator: the legacy API (POST
// /access/), the Platform API (/app/{contract}/token, /{contract}/pos/…) over
// the same shop, and /_sim/ for the control API (see docs/simulator.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "smaregi-sim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("smaregi-sim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9080", "address to listen on")
	contract := fs.String("contract", "skdemo", "contract ID (契約ID)")
	token := fs.String("token", "", "access token (or the SMAREGI_SIM_TOKEN environment variable)")
	stores := fs.String("stores", "1", "comma-separated store IDs")
	products := fs.Int("products", 1000, "number of products (productId 8000001, …)")
	initial := fs.Int64("initial-stock", 10, "starting stock of every product in every store (0: no rows)")
	seed := fs.Int64("seed", 1, "seed for product codes and injected faults")
	limitOver := fs.String("limit-over-max", smaregisim.LimitOverMaxError, "limit over 1000: error or clamp")
	condObjs := fs.String("condition-objects", smaregisim.ConditionsOr, "how several condition objects combine: or, and")
	errStatus := fs.Int("error-status", http.StatusBadRequest, "HTTP status of protocol errors")
	codeString := fs.Bool("error-code-string", false, "send error_code as a string")
	rawUnicode := fs.Bool("raw-unicode", false, "send non-ASCII as UTF-8 instead of \\uXXXX escapes")
	echo := fs.Bool("echo-api-writes", false, "stock_upd changes also produce stock_send")
	maxRows := fs.Int("max-update-rows", 500, "most rows per stock_upd (negative: unlimited)")
	retries := fs.Int("send-retries", 0, "automatic retries of a failed send")
	retryInterval := fs.Duration("send-retry-interval", time.Second, "pause before an automatic retry")
	inQuery := fs.Bool("send-params-in-query", false, "put the send's extra parameters in the query string")
	memo := fs.String("memo", smaregisim.MemoKept, "what stock_upd does with a row's memo: kept (returned in StockHistory), ignored (accepted, not kept), rejected (error 41, no memo column)")
	clientID := fs.String("client-id", "", "Platform app client ID (empty: every token request is invalid_client)")
	clientSecret := fs.String("client-secret", "", "Platform app client secret (or the SMAREGI_SIM_CLIENT_SECRET environment variable)")
	scopes := fs.String("platform-scopes", strings.Join(smaregisim.DefaultPlatformScopes, " "), "space-separated scopes granted to the Platform app")
	installed := fs.String("platform-installed", "", "comma-separated contracts that installed the Platform app (default: --contract)")
	tokenLife := fs.Duration("token-lifetime", time.Hour, "lifetime (expires_in) of Platform access tokens")
	reads := fs.Int("platform-reads-per-second", smaregisim.DefaultPlatformReadsPerSecond, "Platform reads (and token calls) per second per app and contract (negative: unlimited)")
	writes := fs.Int("platform-writes-per-second", smaregisim.DefaultPlatformWritesPerSecond, "Platform writes per second per app and contract (negative: unlimited)")
	paging := fs.String("platform-paging", smaregisim.PagingPage, "how Platform lists page: page (page=N) or link (Link: rel=\"next\")")
	hookDelay := fs.Duration("webhook-delay", 0, "hold every Platform webhook and bulk callback this long")
	hookDup := fs.Float64("webhook-duplicate-rate", 0, "probability that a Platform webhook is posted twice")
	quiet := fs.Bool("quiet", false, "log only errors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("SMAREGI_SIM_TOKEN")
	}
	if *token == "" {
		return errors.New("--token (or SMAREGI_SIM_TOKEN) is required")
	}
	if *clientSecret == "" {
		*clientSecret = os.Getenv("SMAREGI_SIM_CLIENT_SECRET")
	}
	var installedList []string
	if *installed != "" {
		installedList = strings.Split(*installed, ",")
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sim, err := smaregisim.New(smaregisim.Options{
		Contract: *contract, Token: *token, Stores: strings.Split(*stores, ","),
		Products: *products, InitialStock: *initial, Seed: *seed, Logger: log,
		Behaviour: smaregisim.Behaviour{
			LimitOverMax: *limitOver, ConditionObjects: *condObjs, ErrorStatus: *errStatus,
			ErrorCodeAsString: *codeString, RawUnicode: *rawUnicode, EchoAPIWrites: *echo,
			MaxUpdateRows: *maxRows, SendRetries: *retries, SendRetryInterval: *retryInterval,
			ExtraParamsInQuery: *inQuery, Memo: *memo,
		},
		Platform: smaregisim.PlatformOptions{
			ClientID: *clientID, ClientSecret: *clientSecret, Scopes: strings.Fields(*scopes),
			Installed: installedList, TokenLifetime: *tokenLife,
			ReadsPerSecond: *reads, WritesPerSecond: *writes, Paging: *paging,
			WebhookDelay: *hookDelay, WebhookDuplicateRate: *hookDup,
		},
	})
	if err != nil {
		return err
	}
	defer sim.Close()

	srv := &http.Server{Addr: *listen, Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", *listen, "contract", *contract, "stores", *stores, "products", *products)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
