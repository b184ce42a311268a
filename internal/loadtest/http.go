package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// HTTPConfig configures an HTTP target.
type HTTPConfig struct {
	// Stack configures the stack below the app's handlers (registry,
	// pools, rate limiter, logger).
	Stack StackConfig
	// Conns sizes the load generator's HTTP transport: connections kept
	// open to the app (default 1024). An open-loop run has as many
	// requests in flight as its rate times their latency; a request that
	// finds no idle connection dials a new one, which on loopback costs
	// little but shows in the tail.
	Conns int
}

// HTTP is a Target that sends each request to the example app
// (examples/app: server.New with api.API, HS256 JWT authentication and
// Precheck: Gate.Check) served on a loopback listener in this process, over
// the same router, admission gate and rate limiter as the Stack target,
// with each tenant's signed token. A read is GET /v1/customers/{id}, a write
// POST /v1/orders. Its Stack is the app's own (server.NewStack): Gate and
// Client are those the handlers use; Seed seeds through it.
//
// Do maps statuses back to the errors Classify knows (see HTTPError): 429
// throttled to ratelimit.ErrThrottled, 429 tenant_busy to
// admission.ErrTenantBusy, 503 unavailable to tenancy.ErrShardUnavailable,
// 503 tenant_read_only to tenancy.ErrTenantReadOnly, 503 timeout to
// context.DeadlineExceeded.
type HTTP struct {
	*Stack
	// URL is the app's base URL, http://127.0.0.1:port.
	URL string
	// Auth signs the tenants' tokens (a random secret).
	Auth *auth.Authenticator
	// HTTPClient is the load generator's client (one transport, sized by
	// HTTPConfig.Conns).
	HTTPClient *http.Client

	mu     sync.RWMutex
	tokens map[tenancy.ID]string

	cancel context.CancelFunc
	done   chan error
}

var _ Target = (*HTTP)(nil)

// NewHTTP starts the example app over a new stack on a loopback port.
// Close stops it.
func NewHTTP(ctx context.Context, cfg HTTPConfig) (*HTTP, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 1024
	}
	reg := prometheus.NewRegistry()
	var appStack *server.Stack
	st, err := newStack(ctx, cfg.Stack, func(r *router.Router, rl admission.RateLimiter) (*admission.Gate, *ent.Client, error) {
		var err error
		appStack, err = server.NewStack(r, reg, server.StackOptions{RateLimiter: rl})
		if err != nil {
			return nil, nil, err
		}
		return appStack.Gate, appStack.Client, nil
	})
	if err != nil {
		return nil, err
	}
	log := cfg.Stack.Logger
	if log == nil {
		log = slog.Default()
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	a, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := server.New(server.Config{
		API: &api.API{Client: appStack.Client, Log: log}, Auth: a, Metrics: reg, Log: log,
		Ready:           server.ShardChecks(st.Router.Shards()),
		ShutdownTimeout: 5 * time.Second,
		Precheck:        appStack.Gate.Check,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("loadtest: listen on loopback: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Conns,
		MaxIdleConnsPerHost: cfg.Conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &HTTP{
		Stack: st, URL: "http://" + ln.Addr().String(), Auth: a,
		HTTPClient: &http.Client{Transport: tr},
		tokens:     map[tenancy.ID]string{},
		cancel:     cancel, done: make(chan error, 1),
	}
	go func() { h.done <- srv.Serve(sctx, ln) }()
	return h, nil
}

// Close stops the app (draining in-flight requests), closes the client's
// connections and the stack.
func (h *HTTP) Close() error {
	// The client's connections first: one it dialed but never sent a
	// request on is new to the server, which waits 5 s before treating it
	// as idle on shutdown.
	h.HTTPClient.CloseIdleConnections()
	h.cancel()
	err := <-h.done
	return errors.Join(err, h.Stack.Close())
}

// Seed seeds the tenants' customers (Stack.Seed, through the app's client)
// and signs a token for each tenant, valid for a day.
func (h *HTTP) Seed(ctx context.Context, tenants []tenancy.ID, perTenant int) error {
	if err := h.Stack.Seed(ctx, tenants, perTenant); err != nil {
		return err
	}
	toks := make(map[tenancy.ID]string, len(tenants))
	for _, id := range tenants {
		tok, err := h.Auth.Token(id, 24*time.Hour)
		if err != nil {
			return err
		}
		toks[id] = tok
	}
	h.mu.Lock()
	for id, tok := range toks {
		h.tokens[id] = tok
	}
	h.mu.Unlock()
	return nil
}

// Token returns the signed token of a seeded tenant.
func (h *HTTP) Token(id tenancy.ID) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.tokens[id]
}

// HTTPError is a non-2xx answer of the app. It unwraps to the error the
// app's status and code stand for, so Classify sorts it: see HTTP.
type HTTPError struct {
	Tenant tenancy.ID
	Method string
	Path   string
	Status int
	// Code is the "code" of the app's JSON error body.
	Code string
	// RetryAfter is the Retry-After header as sent ("" when none).
	RetryAfter string
	// Err is what the status and code stand for (ratelimit.ErrThrottled,
	// ...), nil for a status without a counterpart.
	Err error
}

func (e *HTTPError) Error() string {
	ra := ""
	if e.RetryAfter != "" {
		ra = ", Retry-After " + e.RetryAfter
	}
	msg := fmt.Sprintf("loadtest: %s %s of tenant %s: HTTP %d %s%s", e.Method, e.Path, e.Tenant, e.Status, e.Code, ra)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the error the answer stands for.
func (e *HTTPError) Unwrap() error { return e.Err }

// RetryAfterDuration returns Retry-After in seconds as a duration, 0 when
// absent or malformed.
func (e *HTTPError) RetryAfterDuration() time.Duration {
	n, err := strconv.Atoi(e.RetryAfter)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// statusErr maps an answer of the app to the error it stands for.
func statusErr(status int, code string) error {
	switch {
	case status == http.StatusTooManyRequests && code == "tenant_busy":
		return admission.ErrTenantBusy
	case status == http.StatusTooManyRequests:
		return ratelimit.ErrThrottled
	case status == http.StatusServiceUnavailable && code == "unavailable":
		return tenancy.ErrShardUnavailable
	case status == http.StatusServiceUnavailable && code == "tenant_read_only":
		return tenancy.ErrTenantReadOnly
	case status == http.StatusServiceUnavailable && code == "timeout":
		return context.DeadlineExceeded
	}
	return nil
}

// Do implements Target.
func (h *HTTP) Do(ctx context.Context, r Request) error {
	cid, err := h.customer(r)
	if err != nil {
		return err
	}
	tok := h.Token(r.Tenant)
	if tok == "" {
		return fmt.Errorf("loadtest: tenant %s has no token: call HTTP.Seed first", r.Tenant)
	}
	method, path, body := http.MethodGet, "/v1/customers/"+cid.String(), io.Reader(nil)
	if r.Op == Write {
		method, path = http.MethodPost, "/v1/orders"
		body = bytes.NewReader(fmt.Appendf(nil, `{"number":%q,"customer_id":%q}`, h.orderNumber(), cid.String()))
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("loadtest: %s %s of tenant %s: %w", method, path, r.Tenant, err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("loadtest: %s %s of tenant %s: read the answer: %w", method, path, r.Tenant, err)
	}
	if resp.StatusCode < 300 {
		// A read answers the customer asked for (its id in the body).
		if r.Op == Read && !bytes.Contains(b, []byte(cid.String())) {
			return fmt.Errorf("loadtest: GET %s of tenant %s: HTTP %d without the customer's id: %.200s", path, r.Tenant, resp.StatusCode, b)
		}
		return nil
	}
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(b, &p)
	return &HTTPError{Tenant: r.Tenant, Method: method, Path: path, Status: resp.StatusCode, Code: p.Code,
		RetryAfter: resp.Header.Get("Retry-After"), Err: statusErr(resp.StatusCode, p.Code)}
}
