package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// newServer returns a server without a database: these tests exercise
// the endpoints that need none. drain is its ShutdownTimeout.
const opsToken = "ops-token-for-the-test"

func newServer(t *testing.T, checks []server.Check, logs io.Writer, drain time.Duration) (*server.Server, *prometheus.Registry) {
	t.Helper()
	a, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := server.New(server.Config{
		API: &api.API{}, Auth: a, Ready: checks, Metrics: reg, OpsToken: opsToken,
		Log: slog.New(slog.NewJSONHandler(logs, nil)), ShutdownTimeout: drain,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGracefulShutdown: a request in flight when shutdown starts finishes
// with its answer; /readyz says not ready while draining; afterwards the
// listener is closed and Serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var logs strings.Builder
	s, _ := newServer(t, []server.Check{{Name: "slow", Check: func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
			<-release
		default:
		}
		return nil
	}}}, &logs, 30*time.Second) // the drain ends with the request, long before
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
	}
	inflight := make(chan result, 1)
	go func() {
		code, body := get(t, url+"/readyz")
		inflight <- result{code, body}
	}()
	<-started
	cancel() // SIGTERM
	// The server marks itself draining, then closes the listener: wait
	// for that (a fixed 100 ms was not always enough on a loaded machine).
	closed := false
	for deadline := time.Now().Add(10 * time.Second); !closed && time.Now().Before(deadline); {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if closed = err != nil; !closed {
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !closed {
		t.Error("the listener still accepts connections 10 s into the drain")
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	close(release)
	r := <-inflight
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "shutting down") {
		t.Errorf("in-flight readiness answered %d %s, want 503 shutting down", r.status, r.body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	if !strings.Contains(logs.String(), "shut down cleanly") {
		t.Errorf("no clean shutdown in the log: %s", logs.String())
	}
}

// TestDrainDeadline: a request that outlives the drain deadline is cut off
// and Serve says so.
func TestDrainDeadline(t *testing.T) {
	started, unstick := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(unstick) })
	const drain = 2 * time.Second
	s, _ := newServer(t, []server.Check{{Name: "stuck", Check: func(ctx context.Context) error {
		started <- struct{}{}
		<-unstick // ignores its context, like a stuck handler, until the test ends
		return nil
	}}}, io.Discard, drain)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	go http.Get("http://" + ln.Addr().String() + "/readyz") //nolint:errcheck
	<-started
	t0 := time.Now()
	cancel()
	// The handler never returns by itself: Serve returns only if the
	// drain deadline cuts it off (no wall-clock bound above the deadline,
	// which a loaded machine overshoots for reasons of its own).
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Serve still waits for a stuck request 30 s after shutdown began (drain deadline %s)", drain)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve = %v, want the drain deadline", err)
	}
	if d := time.Since(t0); d < drain {
		t.Errorf("shutdown took %s, before the %s drain deadline", d, drain)
	}
}

// TestHealthReadyMetrics: liveness, readiness with a failing check,
// metrics of requests, and an access log without the credential.
func TestHealthReadyMetrics(t *testing.T) {
	var logs strings.Builder
	failing := errors.New("shard0: connection refused")
	s, _ := newServer(t, []server.Check{
		{Name: "registry", Check: func(context.Context) error { return nil }},
		{Name: "shard0", Check: func(context.Context) error { return failing }},
	}, &logs, 2*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, ln) //nolint:errcheck
	url := "http://" + ln.Addr().String()

	if code, body := get(t, url+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	type readiness struct {
		Ready  bool
		Checks []struct {
			Name  string
			OK    bool
			Error string
		}
	}
	// Operators see why a check fails; anyone else only that it does (the
	// reason names hosts, roles and databases).
	for _, tc := range []struct {
		header []string
		reason string
	}{
		{[]string{"Authorization", "Bearer " + opsToken}, failing.Error()},
		{nil, ""},
		{[]string{"Authorization", "Bearer wrong"}, ""},
	} {
		code, body := get(t, url+"/readyz", tc.header...)
		var ready readiness
		if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 503 || ready.Ready || len(ready.Checks) != 2 ||
			!ready.Checks[0].OK || ready.Checks[1].OK || ready.Checks[1].Name != "shard0" || ready.Checks[1].Error != tc.reason {
			t.Errorf("/readyz with a failing shard (%v): %d %s", tc.header, code, body)
		}
	}
	if !strings.Contains(logs.String(), failing.Error()) {
		t.Errorf("the failing check's reason is not logged: %s", logs.String())
	}
	const secret = "Bearer sekrit-token-that-must-not-be-logged"
	if code, _ := get(t, url+"/v1/orders/123", "Authorization", secret); code != 401 {
		t.Errorf("bad token: %d", code)
	}
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", opsToken}} {
		if code, body := get(t, url+"/metrics", h...); code != 401 || strings.Contains(body, "app_http") {
			t.Errorf("/metrics without the operators' token (%v): %d %.80s", h, code, body)
		}
	}
	code, body := get(t, url+"/metrics", "Authorization", "Bearer "+opsToken)
	for _, want := range []string{
		`app_http_requests_total{code="401",method="GET",route="GET /v1/orders/{id}"} 1`,
		`app_http_requests_total{code="503",method="GET",route="/readyz"} 3`,
		`app_http_request_duration_seconds_bucket{route="/healthz"`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), "sekrit") {
		t.Errorf("the log holds the credential: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"route":"GET /v1/orders/{id}"`) || !strings.Contains(logs.String(), `"status":401`) {
		t.Errorf("no access log line for the refused request: %s", logs.String())
	}
}

// TestPrecheck: a refusal of the precheck answers before the handler (the
// API here has no client: reaching it would fail differently), with the
// status of the error.
func TestPrecheck(t *testing.T) {
	a, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	tenant := tenancy.NewID()
	var checked []tenancy.ID
	s, err := server.New(server.Config{API: &api.API{}, Auth: a, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Precheck: func(id tenancy.ID) error {
			checked = append(checked, id)
			return fmt.Errorf("gate: %w", ratelimit.ErrThrottled)
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tok, _ := a.Token(tenant, time.Minute)
	code, body := get(t, srv.URL+"/v1/orders", "Authorization", "Bearer "+tok)
	if code != 429 || !strings.Contains(body, `"throttled"`) || len(checked) != 1 || checked[0] != tenant {
		t.Errorf("precheck refusal: %d %s, checked %v", code, body, checked)
	}
	if code, _ := get(t, srv.URL+"/v1/orders"); code != 401 || len(checked) != 1 {
		t.Errorf("unauthenticated request: %d, checked %d times", code, len(checked))
	}
}

// TestReadinessChecksReused: /readyz answers anyone, and each run of the
// checks pings every shard; runs within readyTTL reuse the last results.
func TestReadinessChecksReused(t *testing.T) {
	var runs atomic.Int64
	s, _ := newServer(t, []server.Check{{Name: "shard0", Check: func(context.Context) error { runs.Add(1); return nil }}}, io.Discard, time.Second)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for range 20 {
		if code, body := get(t, srv.URL+"/readyz"); code != 200 {
			t.Fatalf("/readyz: %d %s", code, body)
		}
	}
	if n := runs.Load(); n > 2 { // a run may straddle the TTL
		t.Errorf("20 requests in a row ran the checks %d times", n)
	}
}
