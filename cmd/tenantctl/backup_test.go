package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
)

// TestTenantsBackupRestore drives tenants backup, backups and restore
// (replace and as a new tenant) against a registry and two shards.
func TestTenantsBackupRestore(t *testing.T) {
	ctx := context.Background()
	clusters := pgtest.Shards(t, 2)
	suffix := fmt.Sprint(os.Getpid())
	regDB, shardDB := "bk_registry_"+suffix, "bk_app_"+suffix
	require.NoError(t, clusters[0].CreateDatabase(ctx, regDB))
	for _, c := range clusters {
		require.NoError(t, c.CreateDatabase(ctx, shardDB))
	}
	reg := []string{"-registry", clusters[0].DSN("postgres", regDB), "-dir", t.TempDir()}
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
	mustNoDir := func(args ...string) string { // registry commands take no -dir
		t.Helper()
		var out, errOut bytes.Buffer
		full := append(append(args[:2:2], reg[:2]...), args[2:]...)
		require.NoError(t, run(ctx, full, &out, &errOut), "%s", errOut.String())
		return out.String()
	}
	mustNoDir("shards", "add", "-name", "s0", "-dsn", clusters[0].DSN("postgres", shardDB), "-ensure-roles")
	mustNoDir("shards", "add", "-name", "s1", "-dsn", clusters[1].DSN("postgres", shardDB), "-ensure-roles")
	mustNoDir("tenants", "create", "-slug", "acme", "-shard", "s0")
	mustNoDir("tenants", "create", "-slug", "pooled", "-mode", "shared", "-shard", "s0")
	mustNoDir("tenants", "create", "-slug", "neighbour", "-mode", "shared", "-shard", "s0")

	roles := migrate.DefaultRoles()
	customers := func(slug string, insert int) int {
		t.Helper()
		tn, err := registryTenant(ctx, reg[1], slug)
		require.NoError(t, err)
		idx := map[string]int{"s0": 0, "s1": 1}[tn.Placement.Shard]
		conn, err := pgx.Connect(ctx, clusters[idx].DSN(roles.Owner, shardDB))
		require.NoError(t, err)
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", tn.ID.String())
		require.NoError(t, err)
		table := pgx.Identifier{tn.Placement.Schema, "customers"}.Sanitize()
		if insert > 0 {
			_, err = tx.Exec(ctx, "INSERT INTO "+table+` (id, tenant_id, name, email, created_at)
				SELECT gen_random_uuid(), $1, 'c' || i, $2 || i || '@example.test', now() FROM generate_series(1, $3::int) i`,
				tn.ID, fmt.Sprintf("%s-%d-", slug, insert), insert)
			require.NoError(t, err)
		}
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE tenant_id = $1", tn.ID).Scan(&n))
		require.NoError(t, tx.Commit(ctx))
		return n
	}
	customers("acme", 40)
	customers("pooled", 30)
	customers("neighbour", 20)

	archiveOf := regexp.MustCompile(`archive (\S+),`)
	out := must("tenants", "backup", "acme")
	acmeArchive := archiveOf.FindStringSubmatch(out)[1]
	out = must("tenants", "backup", "-parallel", "1", "-name", "pooled-nightly", "pooled")
	require.Contains(t, out, "archive pooled-nightly,")
	_, err := ctl("tenants", "backup", "-parallel", "-1", "acme")
	require.ErrorContains(t, err, "-parallel -1")
	out = must("tenants", "backups")
	require.Contains(t, out, acmeArchive)
	require.Contains(t, out, "pooled-nightly")
	out = must("tenants", "backups", "pooled")
	require.Contains(t, out, "pooled-nightly")
	require.NotContains(t, out, acmeArchive)

	// Replace: refused without -replace, then back to 40 and 30 rows.
	customers("acme", 5)
	customers("pooled", 7)
	_, err = ctl("tenants", "restore", "-archive", acmeArchive, "acme")
	require.ErrorContains(t, err, "-replace")
	out = must("tenants", "restore", "-archive", acmeArchive, "-replace", "acme")
	require.Contains(t, out, "kept in schema "+backup.RetiredPrefix)
	require.Equal(t, 40, customers("acme", 0))
	must("tenants", "restore", "-archive", "pooled-nightly", "-replace", "pooled")
	require.Equal(t, 30, customers("pooled", 0))
	require.Equal(t, 20, customers("neighbour", 0))

	// Another tenant's archive over a live tenant (a typo in -archive): refused
	// unless said; nothing changes.
	customers("neighbour", 3)
	_, err = ctl("tenants", "restore", "-archive", "pooled-nightly", "-replace", "neighbour")
	require.ErrorContains(t, err, "holds tenant")
	require.ErrorContains(t, err, "-from-other-tenant")
	require.Equal(t, 23, customers("neighbour", 0))
	out = must("tenants", "restore", "-archive", acmeArchive, "-replace", "-from-other-tenant", "neighbour")
	require.Contains(t, out, "(data of tenant ")
	require.Equal(t, 40, customers("neighbour", 0))

	// As a new tenant on the other shard, in a shared schema: registered,
	// active, with the archive's rows under its own id.
	sandbox := tenancy.NewID()
	out = must("tenants", "restore", "-archive", acmeArchive, "-as-new", "-slug", "acme-sandbox", "-id", sandbox.String(), "-mode", "shared", "-shard", "s1")
	require.Contains(t, out, "as new tenant acme-sandbox")
	sb, err := registryTenant(ctx, reg[1], "acme-sandbox")
	require.NoError(t, err)
	require.Equal(t, registry.Active, sb.State)
	require.Equal(t, sandbox, sb.ID)
	require.Equal(t, 40, customers("acme-sandbox", 0))

	_, err = ctl("tenants", "restore", "-archive", "no-such-archive", "-replace", "acme")
	require.ErrorIs(t, err, backup.ErrNotFound)

	// A failed restore as a new tenant leaves it provisioning; the same
	// command (here with the archive name corrected) resumes it, as its
	// error says, instead of "already exists".
	_, err = ctl("tenants", "restore", "-archive", "no-such-archive", "-as-new", "-slug", "acme-retry")
	require.ErrorIs(t, err, backup.ErrNotFound)
	require.ErrorContains(t, err, "run the same create again to resume")
	out = must("tenants", "restore", "-archive", acmeArchive, "-as-new", "-slug", "acme-retry")
	require.Contains(t, out, "as new tenant acme-retry")
	require.Equal(t, 40, customers("acme-retry", 0))
}
