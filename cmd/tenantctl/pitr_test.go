package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy/pitr"
)

// TestShardsBaseBackupAndRestoreAt drives shards basebackup and tenants
// restore -at (replace, and as a new tenant) on a shard that archives WAL.
func TestShardsBaseBackupAndRestoreAt(t *testing.T) {
	ctx := context.Background()
	c, err := pgtest.Start(ctx, pgtest.Options{Name: "ctl-pitr", Archive: true, ArchiveTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.CreateDatabase(ctx, "registry"))
	require.NoError(t, c.CreateDatabase(ctx, "app"))
	scratch, err := os.MkdirTemp("", "ctl-pitr-scratch-") // reachable by the postgres user
	require.NoError(t, err)
	os.Chmod(scratch, 0o755)
	t.Cleanup(func() { os.RemoveAll(scratch) })
	baseDir, metricsFile := t.TempDir(), filepath.Join(t.TempDir(), "pitr.prom")
	regDSN := c.DSN("postgres", "registry")
	ctl := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		full := append(append(args[:2:2], "-registry", regDSN), args[2:]...)
		require.NoError(t, run(ctx, full, &out, &errOut), "tenantctl %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
		t.Logf("$ tenantctl %s\n%s", strings.Join(args, " "), out.String())
		return out.String()
	}
	ctl("shards", "add", "-name", "p0", "-dsn", c.DSN("postgres", "app"), "-ensure-roles")
	ctl("tenants", "create", "-slug", "acme", "-shard", "p0")
	out := ctl("shards", "basebackup", "-dir", baseDir, "p0")
	require.Regexp(t, `base backup p0-\S+ of shard p0 in `, out)

	roles := migrate.DefaultRoles()
	conn, err := pgx.Connect(ctx, c.DSN("postgres", "app"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	tn, err := registryTenant(ctx, regDSN, "acme")
	require.NoError(t, err)
	table := pgx.Identifier{tn.Placement.Schema, "customers"}.Sanitize()
	insert := func(n int, batch string) {
		t.Helper()
		_, err := conn.Exec(ctx, "INSERT INTO "+table+` (id, tenant_id, name, email, created_at)
			SELECT gen_random_uuid(), $1, 'c' || i, $2 || i || '@example.test', now() FROM generate_series(1, $3::int) i`, tn.ID, batch, n)
		require.NoError(t, err)
	}
	count := func(schema, id string) int {
		t.Helper()
		var n int
		require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "customers"}.Sanitize()+" WHERE tenant_id = $1", id).Scan(&n))
		return n
	}
	insert(40, "a")
	time.Sleep(20 * time.Millisecond)
	var at time.Time
	require.NoError(t, conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at))
	time.Sleep(20 * time.Millisecond)
	insert(7, "b")
	_, err = conn.Exec(ctx, "DELETE FROM "+table+" WHERE email LIKE 'a1%'") // 11 of the 40
	require.NoError(t, err)
	require.Equal(t, 36, count(tn.Placement.Schema, tn.ID.String()))
	var seg string
	require.NoError(t, conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg))
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(c.ArchiveDir(), seg))
		return err == nil
	}, time.Minute, 50*time.Millisecond)

	common := []string{"-dir", t.TempDir(), "-at", at.UTC().Format(time.RFC3339Nano), "-base-dir", baseDir, "-wal-archive", c.ArchiveDir(),
		"-scratch-dir", scratch, "-owner-role", roles.Owner}
	out = ctl(append(append([]string{"tenants", "restore"}, common...), "-progress", "always", "-metrics-file", metricsFile, "-replace", "acme")...)
	require.Contains(t, out, "[2/5] recover: replaying WAL to ")
	require.Contains(t, out, "restored tenant acme")
	require.Equal(t, 40, count(tn.Placement.Schema, tn.ID.String()))
	prom, err := os.ReadFile(metricsFile)
	require.NoError(t, err)
	require.Contains(t, string(prom), `tenantry_pitr_restores_total{result="ok"} 1`)

	out = ctl(append(append([]string{"tenants", "restore"}, common...), "-as-new", "-slug", "acme-past", "-mode", "shared", "acme")...)
	require.Contains(t, out, "as new tenant acme-past")
	past, err := registryTenant(ctx, regDSN, "acme-past")
	require.NoError(t, err)
	require.Equal(t, 40, count(past.Placement.Schema, past.ID.String()))
	require.Equal(t, 40, count(tn.Placement.Schema, tn.ID.String()))

	// A time before the base backup: refused, nothing changed.
	var errOut bytes.Buffer
	err = run(ctx, []string{"tenants", "restore", "-registry", regDSN, "-dir", t.TempDir(), "-at", "2020-01-01T00:00:00Z", "-base-dir", baseDir,
		"-wal-archive", c.ArchiveDir(), "-scratch-dir", scratch, "-replace", "acme"}, &bytes.Buffer{}, &errOut)
	require.ErrorIs(t, err, pitr.ErrNoBaseBackup)
	entries, err := os.ReadDir(scratch)
	require.NoError(t, err)
	require.Empty(t, entries, fmt.Sprintf("scratch clusters left behind: %v", entries))
}
