package smaregisim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxTokenBody caps a token request's form.
const maxTokenBody = 64 << 10

// platTokenEndpoint is POST /app/{contract}/token: OAuth2 client
// credentials. Errors use the OAuth2 shape {"error","error_description"}
// (RFC 6749 §5.2), not RFC 7807: this is the identity server, not the API.
func (s *Server) platTokenEndpoint(w http.ResponseWriter, r *http.Request) {
	defer drain(r.Body)
	contract := r.PathValue("contract")
	p := s.plat
	id, secret, hasBasic := r.BasicAuth()
	p.mu.Lock()
	wantID, wantSecret := p.o.ClientID, p.o.ClientSecret
	p.mu.Unlock()
	if !hasBasic || wantID == "" || id != wantID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(wantSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="smaregi"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	now := s.clock()
	p.mu.Lock()
	retry := p.take(contract, false, now)
	p.mu.Unlock()
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		writeOAuthError(w, http.StatusTooManyRequests, "too_many_requests", "rate limit of the app and contract exceeded")
		return
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxTokenBody)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body is not a valid form")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.installed[contract] {
		// A distinct code from invalid_client: the credentials are right,
		// the shop has not installed (or has uninstalled) the app.
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", "the app is not installed for contract "+truncate(contract, 40))
		return
	}
	requested := strings.Fields(r.PostForm.Get("scope"))
	if len(requested) == 0 {
		requested = p.o.Scopes
	}
	scopes := make(map[string]bool, len(requested))
	for _, sc := range requested {
		if !slices.Contains(p.o.Scopes, sc) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "scope "+truncate(sc, 60)+" is not granted to the app")
			return
		}
		scopes[sc] = true
	}
	tok := rand.Text() + rand.Text()
	p.tokens[sha256.Sum256([]byte(tok))] = &platToken{contract: contract, scopes: scopes, expires: now.Add(p.o.TokenLifetime)}
	body, _ := json.Marshal(struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}{tok, "Bearer", int64(p.o.TokenLifetime.Seconds()), strings.Join(requested, " ")})
	w.Header().Set("Cache-Control", "no-store")
	writeAPIJSON(w, http.StatusOK, body)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.Header().Set("Cache-Control", "no-store")
	writeAPIJSON(w, status, b)
}
