package smaregiplatform

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/stocksync/smaregi-operator/internal/answertext"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
)

// errorBody is an RFC 7807 problem or an OAuth2 error.
type errorBody struct {
	Type             string       `json:"type"`
	Title            string       `json:"title"`
	Status           smaregi.Flex `json:"status"`
	Detail           string       `json:"detail"`
	Error            string       `json:"error"`
	ErrorDescription string       `json:"error_description"`
}

func (c *Client) apiError(call string, resp *http.Response, body []byte) error {
	ae := &APIError{Call: call, HTTPStatus: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.RetryAfter = smaregihttp.ParseRetryAfter(resp.Header.Get("Retry-After"))
	}
	var eb errorBody
	if smaregihttp.LooksLikeJSON(body) && json.Unmarshal(body, &eb) == nil && (eb.Title != "" || eb.Detail != "" || eb.Type != "" || eb.Error != "") {
		ae.Problem = true
		ae.Type, ae.Title = c.safeText(eb.Type), c.safeText(eb.Title)
		ae.Detail = c.safeText(eb.Detail)
		if eb.Error != "" {
			ae.OAuthError = c.safeText(eb.Error)
			ae.Detail = c.safeText(eb.ErrorDescription)
		}
		return ae
	}
	ae.Detail = c.describeOpaque(resp, body)
	return ae
}

// describeOpaque summarises a non-JSON answer (answertext.Opaque).
func (c *Client) describeOpaque(resp *http.Response, body []byte) string {
	return answertext.Opaque(resp.Header.Get("Content-Type"), body, c.secrets()...)
}

// safeText makes server-supplied text fit for errors, status and events,
// the client secret and Basic credentials removed (answertext.Safe).
func (c *Client) safeText(s string) string { return answertext.Safe(s, c.secrets()...) }

// secrets are what must never leave in a text: the client secret and the
// Basic credentials made from it.
func (c *Client) secrets() []string {
	return []string{c.secret, strings.TrimPrefix(c.basicAuth, "Basic ")}
}

// scrub removes the secrets from an error's text (smaregihttp.Scrub).
func (c *Client) scrub(err error) error { return smaregihttp.Scrub(err, c.secrets()...) }
