package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// TestTopAndCancel: tenants A and C (shard 0) and D (shard 1) each run a
// pg_sleep through the driver; top shows all three; --cancel A cancels A's
// query only.
func TestTopAndCancel(t *testing.T) {
	env := apptest.New(t)
	shardArgs := []string{
		"--shard", "shard0=" + env.Clusters[0].DSN("postgres", apptest.Database),
		"--shard", "shard1=" + env.Clusters[1].DSN("postgres", apptest.Database),
	}
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Minute)
	defer stop()
	type result struct {
		tenant tenancy.ID
		err    error
	}
	done := make(chan result, 3)
	sleepers := []tenancy.ID{apptest.A, apptest.C, apptest.D}
	for _, id := range sleepers {
		go func() {
			// Longer than the test, however slow: the last top must
			// still see C and D running. The context ends them.
			err := env.Driver.Exec(tenancy.WithTenant(ctx, id), "SELECT pg_sleep(600)", []any{}, nil)
			done <- result{id, err}
		}()
	}
	defer func() { // the others end with the test's context
		stop()
		for range len(sleepers) - 1 {
			<-done
		}
	}()

	var out bytes.Buffer
	deadline := time.Now().Add(30 * time.Second)
	for {
		out.Reset()
		if err := run(ctx, append([]string{"top", "--once"}, shardArgs...), &out, &out); err != nil {
			t.Fatalf("top: %v\n%s", err, out.String())
		}
		if strings.Contains(out.String(), apptest.A.String()) && strings.Contains(out.String(), apptest.C.String()) &&
			strings.Contains(out.String(), apptest.D.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top does not show the three sleeping tenants:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("tenantctl top --once:\n%s", out.String())
	for _, id := range sleepers {
		line := lineOf(out.String(), id.String())
		if !strings.Contains(line, "pg_sleep") {
			t.Errorf("line of %s does not show its query: %q", id, line)
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "1" || f[3] != "1" { // TENANT SHARD ACTIVE IN-TX
			t.Errorf("line of %s: want 1 active in 1 transaction: %q", id, line)
		}
	}
	if !strings.Contains(lineOf(out.String(), apptest.D.String()), "shard1") {
		t.Errorf("D is not shown on shard1")
	}

	out.Reset()
	if err := run(ctx, append([]string{"top", "--cancel", apptest.A.String()}, shardArgs...), &out, &out); err != nil {
		t.Fatalf("top --cancel: %v\n%s", err, out.String())
	}
	t.Logf("tenantctl top --cancel A:\n%s", out.String())
	if !strings.Contains(out.String(), "cancelled 1 running query of tenant "+apptest.A.String()) {
		t.Fatalf("--cancel output:\n%s", out.String())
	}
	select {
	case r := <-done:
		var pgErr *pgconn.PgError
		if r.tenant != apptest.A || !errors.As(r.err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("after --cancel A: tenant %s ended with %v, want A with query_canceled (57014)", r.tenant, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("A's query still runs 30 s after --cancel")
	}
	// C and D still run.
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("tenant %s ended after --cancel A: %v", r.tenant, r.err)
	default:
	}
	out.Reset()
	if err := run(ctx, append([]string{"top", "--once"}, shardArgs...), &out, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), apptest.A.String()) || !strings.Contains(out.String(), apptest.C.String()) ||
		!strings.Contains(out.String(), apptest.D.String()) {
		t.Fatalf("after --cancel A, top shows:\n%s", out.String())
	}
}

func TestTopFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"top", "--once"}, &out, &out); err == nil || !strings.Contains(err.Error(), "--shard") {
		t.Fatalf("top without shards: %v", err)
	}
	if err := run(context.Background(), []string{"top", "--shard", "nodsn"}, &out, &out); err == nil {
		t.Fatal("top --shard nodsn: no error")
	}
	// Refused before connecting: nothing listens on port 1 of the loopback.
	for _, bad := range [][]string{{"--interval", "0s"}, {"--interval", "-1s"}, {"--n", "0"}, {"--n", "-3"}} {
		args := append([]string{"top", "--shard", "s0=postgres://postgres@127.0.0.1:1/x"}, bad...)
		if err := run(context.Background(), args, &out, &out); err == nil || !strings.Contains(err.Error(), bad[0]+" "+bad[1]) {
			t.Fatalf("top %s: %v", strings.Join(bad, " "), err)
		}
	}
	env := apptest.New(t)
	err := run(context.Background(), []string{"top", "--shard", "s0=" + env.Clusters[0].SuperuserDSN(), "--cancel", "x"}, &out, &out)
	if !errors.Is(err, tenancy.ErrInvalidTenantID) {
		t.Fatalf("--cancel x: %v", err)
	}
}

func lineOf(s, substr string) string {
	for l := range strings.Lines(s) {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
