package smaregisim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// routeControl registers the control API under /_sim/.
func (s *Server) routeControl(mux *http.ServeMux) {
	mux.HandleFunc("PUT /_sim/send-config", func(w http.ResponseWriter, r *http.Request) {
		var c SendConfig
		if decode(w, r, &c) {
			reply(w, s.SetSendConfig(c), s.SendConfig())
		}
	})
	mux.HandleFunc("GET /_sim/send-config", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.SendConfig())
	})
	mux.HandleFunc("PUT /_sim/account", func(w http.ResponseWriter, r *http.Request) {
		var a struct {
			Account
			AccessToken string `json:"accessToken"`
		}
		if !decode(w, r, &a) {
			return
		}
		err := s.SetAccount(a.Account)
		if err == nil && a.AccessToken != "" {
			err = s.SetToken(a.AccessToken)
		}
		reply(w, err, s.Account())
	})
	mux.HandleFunc("GET /_sim/account", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Account())
	})
	mux.HandleFunc("PUT /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if decode(w, r, &f) {
			reply(w, s.SetFaults(f), s.Faults())
		}
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Faults())
	})
	mux.HandleFunc("POST /_sim/sales", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			StoreID string     `json:"storeId"`
			Lines   []SaleLine `json:"lines"`
		}
		if !decode(w, r, &in) {
			return
		}
		id, err := s.Sale(in.StoreID, in.Lines)
		reply(w, err, map[string]string{"transactionHeadId": id})
	})
	mux.HandleFunc("GET /_sim/transactions", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Transactions())
	})
	mux.HandleFunc("POST /_sim/transactions/{id}/void", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		reply(w, s.Void(id), map[string]string{"transactionHeadId": id, "cancelDivision": "1"})
	})
	mux.HandleFunc("POST /_sim/stock-movements", func(w http.ResponseWriter, r *http.Request) {
		var m StockMovement
		if !decode(w, r, &m) {
			return
		}
		h, err := s.StockMovement(m)
		reply(w, err, h)
	})
	mux.HandleFunc("GET /_sim/stock", func(w http.ResponseWriter, r *http.Request) {
		rows, err := s.Stock(r.URL.Query().Get("storeId"))
		reply(w, err, rows)
	})
	mux.HandleFunc("GET /_sim/history", func(w http.ResponseWriter, r *http.Request) {
		rows, err := s.History(r.URL.Query().Get("storeId"))
		reply(w, err, rows)
	})
	mux.HandleFunc("GET /_sim/products", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Products())
	})
	mux.HandleFunc("GET /_sim/sends", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, s.Sends())
	})
	mux.HandleFunc("POST /_sim/sends/{id}/resend", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		reply(w, s.Resend(id), map[string]string{"id": id, "state": SendQueued})
	})
	// Wait for the send queue to drain (timeout query parameter, default 10s):
	// lets shell scripts do what WaitSendsIdle does for Go tests.
	mux.HandleFunc("POST /_sim/sends/wait", func(w http.ResponseWriter, r *http.Request) {
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
		err := s.WaitSendsIdle(ctx)
		if err != nil {
			writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
			return
		}
		reply(w, nil, map[string]bool{"idle": true})
	})
}

// maxControlBody caps control API requests.
const maxControlBody = 1 << 20

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON: " + err.Error()})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, err error, v any) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrAlreadyVoided):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}
