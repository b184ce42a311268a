package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServeStatic runs the binary's serve with static shards, an API-key
// file and an admin token, on the apptest clusters: tokens, keys, admin
// report, readiness, then SIGTERM (context cancellation) drains and exits.
func TestServeStatic(t *testing.T) {
	env := apptest.New(t)
	t.Setenv("APP_JWT_SECRET", "test-secret-test-secret-test-secret!")
	t.Setenv("APP_ADMIN_TOKEN", "admin-token-for-the-test")
	t.Setenv("APP_API_KEY_PEPPER", "pepper")
	a, err := authenticator()
	if err != nil {
		t.Fatal(err)
	}
	key, stored, err := a.NewAPIKey(apptest.C)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("# tenant C\n"+stored.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-listen", "127.0.0.1:0", "-api-keys", keys, "-drain", "3s"}
	for i, c := range env.Clusters {
		args = append(args, "-shard", fmt.Sprintf("s%d=%s", i, c.DSN("postgres", apptest.Database)))
	}
	args = append(args,
		"-tenant", apptest.A.String()+"=s0/"+apptest.SharedSchema,
		"-tenant", apptest.C.String()+"=s0/"+apptest.C.SchemaName(),
		"-tenant", apptest.D.String()+"=s1/"+apptest.D.SchemaName())

	call, logs, stop := start(t, args)
	if code, body := call("GET", "/readyz", "", "", ""); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	tokA, _ := a.Token(apptest.A, time.Minute)
	if code, body := call("POST", "/v1/tags", "Authorization", "Bearer "+tokA, `{"name":"appserver-test"}`); code != 201 {
		t.Errorf("create tag with a token: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/tags", "X-API-Key", key, `{"name":"appserver-key"}`); code != 201 {
		t.Errorf("create tag with the API key from the file: %d %s", code, body)
	}
	tokB, _ := a.Token(apptest.B, time.Minute) // B is not configured
	if code, _ := call("GET", "/v1/tags", "Authorization", "Bearer "+tokB, ""); code != 403 {
		t.Errorf("a tenant without a placement: %d, want 403", code)
	}
	if code, _ := call("GET", "/admin/v1/tenants/counts", "Authorization", "Bearer "+tokA, ""); code != 401 {
		t.Errorf("admin with a tenant token: %d, want 401", code)
	}
	code, body := call("GET", "/admin/v1/tenants/counts", "Authorization", "Bearer admin-token-for-the-test", "")
	var rep struct {
		Tenants []struct {
			Tenant string `json:"tenant_id"`
			Tags   int    `json:"tags"`
			Error  string `json:"error"`
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || len(rep.Tenants) != 3 {
		t.Fatalf("admin report: %d %s", code, body)
	}
	for _, tc := range rep.Tenants {
		if tc.Error != "" || tc.Tags < 1 && tc.Tenant != apptest.D.String() {
			t.Errorf("admin report line %+v", tc)
		}
	}
	if strings.Contains(logs.String(), tokA) || strings.Contains(logs.String(), key) {
		t.Error("a credential is in the log")
	}
	stop()
}

type caller func(method, path, header, value, body string) (int, string)

// start runs serve with args until stop, which fails the test unless serve
// drains and returns nil.
func start(t *testing.T, args []string) (call caller, logs *syncBuf, stop func()) {
	t.Helper()
	logs = &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, args, slog.New(slog.NewJSONHandler(logs, nil))) }()
	addrRE := regexp.MustCompile(`"addr":"([^"]+)"`)
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; {
		if m := addrRE.FindStringSubmatch(logs.String()); m != nil {
			url = "http://" + m[1]
		} else if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no listening line: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	call = func(method, path, h, v, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		if h != "" {
			req.Header.Set(h, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	stop = func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not return after SIGTERM")
		}
	}
	return call, logs, stop
}

// TestServeRegistry runs serve on a registry: the router resolves the
// tenant, /readyz checks the router's listener and the shards, and the
// admin report lists the registry's tenants.
func TestServeRegistry(t *testing.T) {
	env := apptest.New(t)
	ctx := context.Background()
	c := env.Clusters[0]
	if err := c.CreateDatabase(ctx, "appserver_registry"); err != nil {
		t.Fatal(err)
	}
	regDSN := c.DSN("postgres", "appserver_registry")
	store, err := registry.Open(ctx, regDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.AddShard(ctx, registry.Shard{Name: "r0", DSN: c.DSN("postgres", apptest.Database), Accepting: true}); err != nil {
		t.Fatal(err)
	}
	tn, err := store.CreateTenant(ctx, registry.NewTenant{Slug: "appserver-test"}, provision.ApplySchema(env.Desired, env.Roles))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("APP_JWT_SECRET", "test-secret-test-secret-test-secret!")
	t.Setenv("APP_ADMIN_TOKEN", "admin-token-for-the-test")
	a, err := authenticator()
	if err != nil {
		t.Fatal(err)
	}
	call, _, stop := start(t, []string{"-listen", "127.0.0.1:0", "-registry", regDSN})
	defer stop()
	if code, body := call("GET", "/readyz", "", "", ""); code != 200 || !strings.Contains(body, `"registry"`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	tok, _ := a.Token(tn.ID, time.Minute)
	if code, body := call("POST", "/v1/customers", "Authorization", "Bearer "+tok, `{"name":"R","email":"r@registry.example"}`); code != 201 {
		t.Fatalf("create through the router: %d %s", code, body)
	}
	if _, err := store.Suspend(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	// The router hears of the change by NOTIFY; 30 s each way is only
	// for a failing test (or a very slow machine).
	deadline := time.Now().Add(30 * time.Second)
	for code, _ := call("GET", "/v1/customers", "Authorization", "Bearer "+tok, ""); code != 403; code, _ = call("GET", "/v1/customers", "Authorization", "Bearer "+tok, "") {
		if time.Now().After(deadline) {
			t.Fatalf("suspended tenant still answered %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := store.Resume(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for code, _ := call("GET", "/v1/customers", "Authorization", "Bearer "+tok, ""); code != 200; code, _ = call("GET", "/v1/customers", "Authorization", "Bearer "+tok, "") {
		if time.Now().After(deadline) {
			t.Fatalf("resumed tenant still answered %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := call("GET", "/admin/v1/tenants/counts", "Authorization", "Bearer admin-token-for-the-test", "")
	if code != 200 || !strings.Contains(body, tn.ID.String()) || !strings.Contains(body, `"customers":1`) {
		t.Errorf("admin report: %d %s", code, body)
	}
}

// TestServeRefusesBadConfig: no secret, a short secret, no routing, a
// malformed key file: serve refuses to start and says why.
func TestServeRefusesBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(bad, []byte("not a key line\n"), 0o600)
	for _, c := range []struct {
		secret string
		args   []string
		want   string
	}{
		{"", []string{"-shard", "s=postgres://h/db"}, "at least 32"},
		{"short", []string{"-shard", "s=postgres://h/db"}, "at least 32"},
		{strings.Repeat("s", 32), nil, "set -registry"},
		{strings.Repeat("s", 32), []string{"-api-keys", bad, "-shard", "s=postgres://h/db"}, bad + ":1"},
		{strings.Repeat("s", 32), []string{"-shard", "s=postgres://h/db", "-tenant", "acme=s/x"}, "want TENANT_ID=SHARD/SCHEMA"},
	} {
		t.Setenv("APP_JWT_SECRET", c.secret)
		err := serve(context.Background(), c.args, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v with secret %q: %v, want an error saying %q", c.args, c.secret, err, c.want)
		}
	}
}
