package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy/move"
)

// TestTenantsMove moves a tenant with tenantctl and lists the move.
func TestTenantsMove(t *testing.T) {
	ctx := context.Background()
	clusters := pgtest.Shards(t, 2)
	suffix := fmt.Sprint(os.Getpid())
	regDB, shardDB := "mv_registry_"+suffix, "mv_app_"+suffix
	require.NoError(t, clusters[0].CreateDatabase(ctx, regDB))
	for _, c := range clusters {
		require.NoError(t, c.CreateDatabase(ctx, shardDB))
	}
	reg := []string{"-registry", clusters[0].DSN("postgres", regDB)}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		full := append(append(args[:2:2], reg...), args[2:]...)
		err := run(ctx, full, &out, &errOut)
		t.Logf("$ tenantctl %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		require.NoError(t, err, out)
		return out
	}
	must("shards", "add", "-name", "s0", "-dsn", clusters[0].DSN("postgres", shardDB), "-ensure-roles")
	must("shards", "add", "-name", "s1", "-dsn", clusters[1].DSN("postgres", shardDB), "-ensure-roles")
	must("tenants", "create", "-slug", "acme", "-shard", "s0")

	out, err := ctl("tenants", "move", "-to", "s0", "acme")
	require.ErrorIs(t, err, move.ErrSameShard, out)
	out, err = ctl("tenants", "move", "-abort", "acme")
	require.ErrorIs(t, err, move.ErrNoMove, out)
	out = must("tenants", "move", "-to", "s1", "-progress", "always", "acme")
	require.Contains(t, out, "moved tenant acme from s0/")
	require.Contains(t, out, "verified: true")
	require.Contains(t, out, "copy", "the progress line names the phases")
	out = must("tenants", "show", "acme")
	require.Contains(t, out, "s1")
	out = must("tenants", "moves", "acme")
	require.Regexp(t, `(?m)^1\s+\S+\s+s0\s+s1\s+done\s+done`, out)
	out = must("tenants", "move", "-drop-retired", "1h")
	require.Contains(t, out, "0 retired sources older than 1h0m0s dropped")
	out = must("tenants", "move", "-drop-retired", "1ns")
	require.Contains(t, out, "1 retired sources older than 1ns dropped")
}
