package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	testPepper = []byte("pepper-for-api-keys-in-tests")
)

// app is the example app served over real HTTP with the real middleware
// on the apptest shards.
type app struct {
	env  *apptest.Env
	auth *auth.Authenticator
	srv  *httptest.Server
	api  *api.API

	metrics *prometheus.Registry
}

// newApp serves the app over resolver (nil: the apptest resolver).
func newApp(t testing.TB, resolver tenancy.Resolver) *app {
	t.Helper()
	env := apptest.New(t)
	if resolver == nil {
		resolver = env.Resolver
	}
	a, err := auth.New(auth.Config{Secret: testSecret, Pepper: testPepper})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	stack, err := server.NewStack(resolver, reg, server.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &api.API{Client: stack.Client}
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.New(server.Config{API: h, Auth: a, Metrics: reg, Ready: server.ShardChecks(env.Shards), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &app{env: env, auth: a, srv: srv, api: h, metrics: reg}
}

// tlog sends the server's warnings and errors to the test log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func (a *app) token(t testing.TB, id tenancy.ID) string {
	t.Helper()
	tok, err := a.auth.Token(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return http.StatusText(r.status) + " " + string(r.body) }

// do sends a request with the given headers (e.g. Authorization).
func (a *app) do(t testing.TB, method, path, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// as sends a request with tenant id's bearer token.
func (a *app) as(t testing.TB, id tenancy.ID, method, path, body string) response {
	t.Helper()
	return a.do(t, method, path, body, "Authorization", "Bearer "+a.token(t, id))
}

// must decodes a 2xx response into v.
func must[T any](t testing.TB, r response, want int) T {
	t.Helper()
	var v T
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func errorBody(t testing.TB, r response) (msg, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("error body %q is not {error, code}: %v", r.body, err)
	}
	return e.Error, e.Code
}
