package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/registry"
)

// TestTenantsOffboard drives tenants offboard, offboardings,
// restore-offboarded and purge against a fresh registry and shard.
func TestTenantsOffboard(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	suffix := fmt.Sprint(os.Getpid())
	regDB, shardDB := "ctl_off_registry_"+suffix, "ctl_off_app_"+suffix
	require.NoError(t, c.CreateDatabase(ctx, regDB))
	require.NoError(t, c.CreateDatabase(ctx, shardDB))
	reg := []string{"-registry", c.DSN("postgres", regDB)}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		full := append(append(args[:2:2], reg...), args[2:]...)
		err := run(ctx, full, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		require.NoError(t, err, "tenantctl %s\n%s", strings.Join(args, " "), out)
		t.Logf("$ tenantctl %s\n%s", strings.Join(args, " "), out)
		return out
	}
	schemas := func(like string) []string {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.DSN("postgres", shardDB))
		require.NoError(t, err)
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", like)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}

	must("shards", "add", "-name", "s0", "-dsn", c.DSN("postgres", shardDB), "-ensure-roles")
	must("tenants", "create", "-slug", "acme")
	must("tenants", "create", "-slug", "initech")
	must("tenants", "create", "-slug", "pooled", "-mode", "shared")
	acme, err := registryTenant(ctx, reg[1], "acme")
	require.NoError(t, err)
	retired := registry.RetiredSchemaName(acme.ID)

	out := must("tenants", "offboard", "-retention", "240h", "-reason", "churned", "acme")
	require.Contains(t, out, "kept as "+retired)
	require.Equal(t, []string{retired}, schemas("retired%"))
	out = must("tenants", "show", "acme")
	require.Regexp(t, `state\s+offboarded`, out)
	out = must("tenants", "offboardings", "acme")
	require.Contains(t, out, "churned")
	require.Contains(t, out, "retained")

	out = must("tenants", "restore-offboarded", "acme")
	require.Contains(t, out, "restored: active")
	require.Empty(t, schemas("retired%"))
	require.Contains(t, schemas(`tenant\_%`), acme.ID.SchemaName())

	// -hard on a live tenant within retention: offboarded (and said so),
	// not purged (and said why).
	out, err = ctl("tenants", "offboard", "-hard", "acme")
	require.ErrorIs(t, err, registry.ErrRetention, out)
	require.ErrorContains(t, err, "add -force")
	require.Contains(t, out, "offboarded: not served")
	require.Equal(t, []string{retired}, schemas("retired%"), "refused: nothing dropped")
	_, err = ctl("tenants", "offboard", "-retention", "0s", "acme")
	require.ErrorContains(t, err, "-retention 0s: must be positive")
	out, err = ctl("tenants", "offboard", "-force", "acme")
	require.Error(t, err, "-force without -hard is refused: %s", out)
	out = must("tenants", "offboard", "-hard", "-force", "acme")
	require.Contains(t, out, "purged")
	require.Contains(t, out, "forced")
	require.Empty(t, schemas("retired%"))
	out = must("tenants", "show", "acme")
	require.Regexp(t, `state\s+deleted`, out)

	must("tenants", "offboard", "-retention", "1ns", "pooled")
	must("tenants", "offboard", "initech")
	out = must("tenants", "purge", "-dry-run")
	require.Contains(t, out, "1 tenant(s)")
	require.Contains(t, out, "pooled")
	out = must("tenants", "purge")
	require.Contains(t, out, "purged 1 tenant(s)")
	require.Contains(t, out, "rows deleted from "+registry.DefaultSharedSchema)
	out = must("tenants", "offboardings", "-open")
	require.Contains(t, out, "initech")
	require.NotContains(t, out, "pooled")
}
