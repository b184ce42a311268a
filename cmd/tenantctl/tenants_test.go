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

// TestTenantsAndShards drives tenantctl shards and tenants against a fresh
// registry and two shard databases.
func TestTenantsAndShards(t *testing.T) {
	ctx := context.Background()
	clusters := pgtest.Shards(t, 2)
	suffix := fmt.Sprint(os.Getpid())
	regDB, shardDB := "ctl_registry_"+suffix, "ctl_app_"+suffix
	require.NoError(t, clusters[0].CreateDatabase(ctx, regDB))
	for _, c := range clusters {
		require.NoError(t, c.CreateDatabase(ctx, shardDB))
	}
	reg := []string{"-registry", clusters[0].DSN("postgres", regDB)}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		// -registry goes after the subcommand: "tenants create -registry ...".
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

	const secret = "pw-never-shown"
	// Trust authentication ignores the password; it is there to be hidden.
	dsn0 := strings.Replace(clusters[0].DSN("postgres", shardDB), "postgres@", "postgres:"+secret+"@", 1)
	out := must("shards", "add", "-name", "s0", "-dsn", dsn0, "-region", "eu", "-capacity", "10", "-ensure-roles")
	require.NotContains(t, out, secret)
	must("shards", "add", "-name", "s1", "-dsn", clusters[1].DSN("postgres", shardDB), "-capacity", "10", "-ensure-roles")
	out, err := ctl("shards", "add", "-name", "s1", "-dsn", clusters[1].DSN("postgres", shardDB))
	require.ErrorIs(t, err, registry.ErrExists, out)
	// Shards that could not work are refused before they get tenants: no
	// database, a closed port, no room.
	_, err = ctl("shards", "add", "-name", "nodb", "-dsn", "postgres://postgres:"+secret+"@127.0.0.1:5432/")
	require.ErrorIs(t, err, registry.ErrInvalid)
	require.NotContains(t, err.Error(), secret)
	_, err = ctl("shards", "add", "-name", "down", "-dsn", "postgres://postgres:"+secret+"@127.0.0.1:1/app?connect_timeout=2")
	require.ErrorContains(t, err, "-unchecked")
	require.NotContains(t, err.Error(), secret)
	_, err = ctl("shards", "add", "-name", "empty", "-dsn", clusters[1].DSN("postgres", shardDB), "-capacity", "0")
	require.ErrorContains(t, err, "-capacity 0")
	out = must("shards", "list")
	require.NotContains(t, out, "nodb")
	require.NotContains(t, out, "down")
	require.NotContains(t, out, "empty")

	out = must("tenants", "create", "-slug", "acme")
	require.Contains(t, out, "created tenant acme")
	must("tenants", "create", "-slug", "globex", "-shard", "s1")
	must("tenants", "create", "-slug", "pooled", "-mode", "shared")
	out, err = ctl("tenants", "create", "-slug", "acme")
	require.ErrorIs(t, err, registry.ErrExists, out)

	out = must("shards", "list")
	require.NotContains(t, out, secret)
	require.Contains(t, out, "xxxxx")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^s0\s+eu\s+\d\s+10\s+true`, lines[1])

	out = must("tenants", "list")
	for _, slug := range []string{"acme", "globex", "pooled"} {
		require.Contains(t, out, slug)
	}
	require.Contains(t, out, registry.DefaultSharedSchema)
	acme, err := registryTenant(ctx, reg[1], "acme")
	require.NoError(t, err)

	// The schema exists on the shard the registry says.
	shardIdx := map[string]int{"s0": 0, "s1": 1}[acme.Placement.Shard]
	conn, err := pgx.Connect(ctx, clusters[shardIdx].DSN("postgres", shardDB))
	require.NoError(t, err)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", acme.ID.SchemaName()).Scan(&tables))
	conn.Close(ctx)
	require.NotZero(t, tables)

	out = must("tenants", "show", "acme")
	require.Regexp(t, `state\s+active`, out)
	require.Contains(t, out, acme.ID.String())
	out = must("tenants", "suspend", "acme")
	require.Contains(t, out, "is suspended")
	out = must("tenants", "list", "-state", "suspended")
	require.Contains(t, out, "acme")
	require.NotContains(t, out, "globex")
	out = must("tenants", "resume", acme.ID.String())
	require.Contains(t, out, "is active")
	out, err = ctl("tenants", "resume", "acme")
	require.NoError(t, err, "resuming an active tenant is a no-op: %s", out)

	must("tenants", "put-plan", "-name", "gold", "-statement-timeout", "2s", "-max-conns", "5", "-replica-reads")
	must("tenants", "put-plan", "-name", "gold", "-work-mem", "16MB") // keeps the other values
	out = must("tenants", "plans")
	require.Regexp(t, `gold\s+2s\s+5s\s+1m0s\s+16MB\s+5\s+0\s+0\s+0s\s+true`, out)
	out = must("tenants", "set-plan", "acme", "gold")
	require.Contains(t, out, "on plan gold")
	out = must("tenants", "show", "acme")
	require.Regexp(t, `statement_timeout\s+2s`, out)
	out, err = ctl("tenants", "set-plan", "acme", "platinum")
	require.ErrorIs(t, err, registry.ErrNotFound, out)

	must("shards", "drain", "s0")
	must("shards", "drain", "s1")
	out, err = ctl("tenants", "create", "-slug", "late")
	require.ErrorIs(t, err, registry.ErrNoCapacity, out)
	must("shards", "drain", "-undo", "s1")
	out = must("tenants", "create", "-slug", "late")
	require.Contains(t, out, "on shard s1")

	// A tenant stuck in provisioning (its owner role does not exist) is
	// abandoned; a served one is not.
	_, err = ctl("tenants", "create", "-slug", "stuck", "-owner-role", "no_such_role")
	require.Error(t, err)
	out = must("tenants", "abandon", "stuck")
	require.Contains(t, out, "abandoned")
	require.Regexp(t, `state\s+deleted`, must("tenants", "show", "stuck"))
	_, err = ctl("tenants", "abandon", "acme")
	require.ErrorIs(t, err, registry.ErrTransition)

	_, err = ctl("tenants", "show", "nobody")
	require.ErrorIs(t, err, registry.ErrNotFound)
	_, err = ctl("tenants", "frobnicate")
	require.Error(t, err)

	// The README's first session: with only $TENANTRY_REGISTRY set, migrate
	// finds the registered shards (it said "no shards").
	t.Setenv(registryEnv, reg[1])
	t.Setenv(envShards, "")
	var mout, merr bytes.Buffer
	require.NoError(t, run(ctx, []string{"migrate", "plan"}, &mout, &merr), "%s%s", mout.String(), merr.String())
	require.Contains(t, mout.String(), "s0")
	require.Contains(t, mout.String(), "s1")
}

func registryTenant(ctx context.Context, dsn, ref string) (registry.Tenant, error) {
	s, err := registry.Open(ctx, dsn)
	if err != nil {
		return registry.Tenant{}, err
	}
	defer s.Close()
	return s.Tenant(ctx, ref)
}
