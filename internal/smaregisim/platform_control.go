package smaregisim

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// routePlatformControl registers the Platform part of the control API.
func (s *Server) routePlatformControl(mux *http.ServeMux) {
	mux.HandleFunc("PUT /_sim/webhook-config", func(w http.ResponseWriter, r *http.Request) {
		var c WebhookConfig
		if decode(w, r, &c) {
			reply(w, s.SetWebhookConfig(c), s.WebhookConfig())
		}
	})
	mux.HandleFunc("GET /_sim/webhook-config", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.WebhookConfig())
	})
	mux.HandleFunc("GET /_sim/webhooks", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Webhooks())
	})
	mux.HandleFunc("POST /_sim/webhooks/wait", func(w http.ResponseWriter, r *http.Request) {
		d := 10 * time.Second
		if t := r.URL.Query().Get("timeout"); t != "" {
			v, err := time.ParseDuration(t)
			if err != nil {
				reply(w, fmt.Errorf("timeout: %w", err), nil)
				return
			}
			d = v
		}
		ctx, cancel := contextWithTimeout(r, d)
		defer cancel()
		if err := s.WaitWebhooksIdle(ctx); err != nil {
			writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
			return
		}
		reply(w, nil, map[string]bool{"idle": true})
	})
	mux.HandleFunc("PUT /_sim/platform", func(w http.ResponseWriter, r *http.Request) {
		var ps PlatformSettings
		if decode(w, r, &ps) {
			reply(w, s.SetPlatform(ps), s.Platform())
		}
	})
	mux.HandleFunc("GET /_sim/platform", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Platform())
	})
}

// SetPlatform changes the Platform settings given in ps (the developer
// console and the shop's app settings).
func (s *Server) SetPlatform(ps PlatformSettings) error {
	if err := checkPlatformValues(ps.Scopes, ps.Paging, 0); err != nil {
		return err
	}
	if ps.WebhookDuplicateRate != nil {
		if err := checkPlatformValues(nil, "", *ps.WebhookDuplicateRate); err != nil {
			return err
		}
	}
	if ps.WebhookDelayMs != nil && *ps.WebhookDelayMs < 0 {
		return fmt.Errorf("smaregisim: negative webhook delay %d", *ps.WebhookDelayMs)
	}
	p := s.plat
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps.ClientSecret != "" {
		p.o.ClientSecret = ps.ClientSecret
	}
	if len(ps.Scopes) > 0 {
		p.o.Scopes = slices.Clone(ps.Scopes)
	}
	if ps.Installed != nil {
		p.setInstalled(slices.Clone(ps.Installed))
	}
	if ps.ReadsPerSecond != nil {
		p.o.ReadsPerSecond = *ps.ReadsPerSecond
	}
	if ps.WritesPerSecond != nil {
		p.o.WritesPerSecond = *ps.WritesPerSecond
	}
	if ps.Paging != "" {
		p.o.Paging = ps.Paging
	}
	if ps.WebhookDelayMs != nil {
		p.o.WebhookDelay = time.Duration(*ps.WebhookDelayMs) * time.Millisecond
	}
	if ps.WebhookDuplicateRate != nil {
		p.o.WebhookDuplicateRate = *ps.WebhookDuplicateRate
	}
	return nil
}

// PlatformView is the Platform settings as GET /_sim/platform shows them:
// no secret.
type PlatformView struct {
	ClientID             string   `json:"clientId"`
	Scopes               []string `json:"scopes"`
	Installed            []string `json:"installed"`
	TokenLifetimeSeconds int64    `json:"tokenLifetimeSeconds"`
	ReadsPerSecond       int      `json:"readsPerSecond"`
	WritesPerSecond      int      `json:"writesPerSecond"`
	Paging               string   `json:"paging"`
	WebhookDelayMs       int64    `json:"webhookDelayMs"`
	WebhookDuplicateRate float64  `json:"webhookDuplicateRate"`
}

// Platform returns the current Platform settings.
func (s *Server) Platform() PlatformView {
	p := s.plat
	p.mu.Lock()
	defer p.mu.Unlock()
	return PlatformView{ClientID: p.o.ClientID, Scopes: slices.Clone(p.o.Scopes),
		Installed: slices.Clone(p.o.Installed), TokenLifetimeSeconds: int64(p.o.TokenLifetime.Seconds()),
		ReadsPerSecond: p.o.ReadsPerSecond, WritesPerSecond: p.o.WritesPerSecond, Paging: p.o.Paging,
		WebhookDelayMs: p.o.WebhookDelay.Milliseconds(), WebhookDuplicateRate: p.o.WebhookDuplicateRate}
}
