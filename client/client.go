// Package client is the SDK for payment terminals that talk to a gmgate gateway: an
// *http.Client that dials TLCP (GB/T 38636-2020) with the terminal's dual SM2 certificate,
// signs every request with one of the SM2 payment signature schemes of package signing
// ("wechatpay-v3-sm2", "http-sig-sm2", "form-sm2", "unionpay-sm2"), and accepts a reply only
// when it is signed by a platform certificate with a fresh timestamp. Request bodies can be
// sealed, and replies opened, as SM2 digital envelopes (PKCS#7 EnvelopedData with SM4).
//
// Failures of the reply are typed: ErrReplyUnsigned, ErrReplySignatureInvalid, ErrReplyStale,
// ErrReplyUnknownKey, ErrReplyTooLarge, ErrReplyEnvelope (a *ReplyError wraps one). The
// verified identity of each reply (platform certificate, signed timestamp and nonce, SM3 of the
// signed bytes, signature) is returned in Response.Reply, or through WithReply for callers
// that use the *http.Client directly.
//
// See docs/client.md.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client sends signed requests to one gateway. It is safe for concurrent use.
type Client struct {
	// HTTP is the underlying client; its Transport is the signing *Transport. It does not
	// follow redirects (a signed payment instruction is never re-sent elsewhere): a 3xx reply
	// is returned as is, after its signature has been verified.
	HTTP *http.Client

	base      *url.URL
	transport *Transport
}

// Response is a verified reply.
type Response struct {
	// StatusCode and Header are those of the HTTP reply (Content-Type restored to the inner
	// type when the body was enveloped).
	StatusCode int
	Header     http.Header
	// Body is the verified reply body (opened, when it was enveloped).
	Body []byte
	// Reply is the verified identity of the reply and the evidence of its verification.
	Reply *Reply
}

// New builds a Client from cfg; see Config for required fields and defaults.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("client: Config.BaseURL is required")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("client: BaseURL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.TLCP != nil && base.Scheme != "https" {
		return nil, errors.New("client: TLCP needs an https:// BaseURL")
	}
	if cfg.TLCP != nil && cfg.TLCP.ServerName == "" && cfg.Transport == nil {
		c := *cfg.TLCP
		c.ServerName = base.Hostname()
		cfg.TLCP = &c
	}
	tr, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		timeout = 0
	}
	hc := &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{HTTP: hc, base: base, transport: tr}, nil
}

// Transport returns the signing transport.
func (c *Client) Transport() *Transport { return c.transport }

// URL resolves path (with an optional query) against the base URL.
func (c *Client) URL(path string) (string, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return "", fmt.Errorf("client: bad path: %w", err)
	}
	if ref.IsAbs() || ref.Host != "" {
		return "", errors.New("client: path must be relative to the base URL")
	}
	u := *c.base
	if strings.HasPrefix(ref.Path, "/") || u.Path == "" {
		u.Path = ref.Path
		u.RawPath = ref.RawPath
	} else {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + ref.Path
		u.RawPath = ""
	}
	u.RawQuery = ref.RawQuery
	u.Fragment = ""
	return u.String(), nil
}

// NewRequest builds a request for path with body (nil for none) and, when body is not nil,
// contentType.
func (c *Client) NewRequest(ctx context.Context, method, path, contentType string, body []byte) (*http.Request, error) {
	u, err := c.URL(path)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// Do sends req (signed by the Transport) and returns the verified reply with its body read.
// Any reply that fails verification is an error wrapping one of the ErrReply* sentinels.
func (c *Client) Do(req *http.Request) (*Response, error) {
	var reply Reply
	req = req.WithContext(WithReply(req.Context(), &reply))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// The Transport has already read and verified the body; this copy is bounded by it.
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: read reply: %w", err)
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body, Reply: &reply}, nil
}

// Post sends a signed POST of body (with contentType, e.g. "application/json") to path.
func (c *Client) Post(ctx context.Context, path, contentType string, body []byte) (*Response, error) {
	if body == nil {
		body = []byte{}
	}
	req, err := c.NewRequest(ctx, http.MethodPost, path, contentType, body)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// Get sends a signed GET to path (which may carry a query).
func (c *Client) Get(ctx context.Context, path string) (*Response, error) {
	req, err := c.NewRequest(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// CloseIdleConnections closes idle connections to the gateway.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }
