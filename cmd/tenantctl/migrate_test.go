package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// TestMigrateCommand drives tenantctl migrate apply, plan, status and diff
// against two shard databases.
func TestMigrateCommand(t *testing.T) {
	ctx := context.Background()
	clusters := pgtest.Shards(t, 2)
	db := "ctl_migrate_" + fmt.Sprint(os.Getpid())
	roles := migrate.DefaultRoles()
	var shardFlags []string
	for i, c := range clusters {
		super, err := sql.Open("pgx", c.SuperuserDSN())
		require.NoError(t, err)
		require.NoError(t, migrate.EnsureRoles(ctx, super, roles))
		_, err = super.ExecContext(ctx, "CREATE DATABASE "+db+" OWNER "+roles.Owner)
		super.Close()
		require.NoError(t, err)
		shardFlags = append(shardFlags, "--shard", fmt.Sprintf("s%d=%s", i, c.DSN(roles.Owner, db)))
	}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		full := append(append([]string{"migrate"}, args[0]), shardFlags...)
		err := run(ctx, append(full, args[1:]...), &out, &errOut)
		t.Logf("$ tenantctl migrate %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
		return out.String(), err
	}

	// Explicit targets that do not exist are refused (a typo must not
	// become a schema with every table), unless --create.
	provision := []string{"--target", "s0/tenant_aaaaaaaa00004000800000000000000a", "--target", "s1/tenant_bbbbbbbb00004000800000000000000b",
		"--target", "s0/shared_0", "--log-level", "error"}
	for _, sub := range []string{"plan", "apply"} {
		out, err := ctl(append([]string{sub}, provision...)...)
		require.ErrorIs(t, err, migrate.ErrNoSchema, sub)
		assert.Contains(t, err.Error(), "s0/tenant_aaaaaaaa00004000800000000000000a")
		assert.Contains(t, err.Error(), "tenantctl tenants create")
		assert.Contains(t, err.Error(), "--create")
		assert.NotContains(t, out, "APPLIED")
	}
	st0, err := ctl("status", "--json", "--target", "s0/shared_0")
	require.NoError(t, err)
	assert.Contains(t, st0, `"absent": 1`, "nothing created")

	// Provision by naming the targets: one plan for all.
	out, err := ctl(append([]string{"apply", "--create"}, provision...)...)
	require.NoError(t, err, out)
	assert.Equal(t, []string{"total", "3", "0", "3", "0"}, row(out, "total")[:5])

	out, err = ctl("plan")
	require.NoError(t, err)
	assert.Equal(t, []string{"s0", "2", "2", "0"}, row(out, "s0")[:4])

	out, err = ctl("status", "--json")
	require.NoError(t, err)
	var st migrate.StatusReport
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Shards, 2)
	assert.Equal(t, 2, st.Shards[0].Current)
	assert.Equal(t, 1, st.Shards[1].Current)

	// plan fails when apply would: a shard it cannot read, a group without
	// a plan (a schema the owner role cannot change). The table is printed
	// all the same.
	out, err = ctl("plan", "--shard", "down=postgres://tenantry_owner@127.0.0.1:1/nodb?connect_timeout=5", "--log-level", "error")
	require.ErrorIs(t, err, migrate.ErrShardUnavailable)
	assert.Equal(t, []string{"s0", "2", "2", "0"}, row(out, "s0")[:4])
	assert.Equal(t, "down", row(out, "down")[0])
	super0, err := sql.Open("pgx", clusters[0].DSN("postgres", db))
	require.NoError(t, err)
	_, err = super0.ExecContext(ctx, "CREATE SCHEMA foreign_0 AUTHORIZATION postgres")
	super0.Close()
	require.NoError(t, err)
	for _, format := range []string{"--json=false", "--json"} {
		out, err = ctl("plan", "--target", "s0/foreign_0", format, "--log-level", "error")
		require.ErrorIs(t, err, migrate.ErrNoPlan)
		assert.Contains(t, out, "no plan: on s0/foreign_0")
	}

	// A shard name the fleet does not have is an error, not a selection of
	// nothing that succeeds.
	for _, args := range [][]string{
		{"apply", "--only-shard", "nosuch"}, {"plan", "--target", "nosuchshard/x"}, {"status", "--only-shard", "nosuch"},
	} {
		_, err = ctl(append(args, "--log-level", "error")...)
		require.ErrorIs(t, err, migrate.ErrUnknownShard, args)
	}

	// --tenant takes a tenant id: a slug or a typo is an error.
	for _, bad := range []string{"acme", "not-a-uuid"} {
		for _, sub := range []string{"plan", "apply", "status"} {
			_, err = ctl(sub, "--tenant", bad, "--log-level", "error")
			require.ErrorIs(t, err, tenancy.ErrInvalidTenantID, sub+" --tenant "+bad)
			assert.Contains(t, err.Error(), "tenants show "+bad)
		}
	}

	// Targeting: a tenant that does not exist selects nothing.
	out, err = ctl("apply", "--tenant", "cccccccc-0000-4000-8000-00000000000c", "--json", "--log-level", "error")
	require.NoError(t, err)
	var rep migrate.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Zero(t, rep.Total.Targets)

	// Versioned: diff writes a baseline, apply runs it on new schemas.
	dir := t.TempDir()
	out, err = ctl("diff", "baseline", "--dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "_baseline.sql")
	_, err = ctl("apply", "--dir", dir, "--target", "s1/tenant_dddddddd00004000800000000000000d", "--log-level", "error")
	require.ErrorIs(t, err, migrate.ErrNoSchema)
	out, err = ctl("apply", "--dir", dir, "--target", "s1/tenant_dddddddd00004000800000000000000d", "--create", "--log-level", "error")
	require.NoError(t, err)
	assert.Contains(t, out, "versioned mode")

	_, err = ctl("apply", "--shard", "bad")
	require.Error(t, err)
}

// row returns the fields of the first line of out that starts with first.
func row(out, first string) []string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return []string{"(no row " + first + ")", "", "", "", ""}
}

func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	b := &progressLine{w: &out, shards: make(map[string]migrate.Counts), total: 4}
	b.start = b.start.Add(-time.Second)
	for i, shard := range []string{"s0", "s1", "s0", "s1"} {
		c := migrate.Counts{Applied: i/2 + 1}
		b.update(migrate.Progress{Target: migrate.Target{Shard: shard}, Shard: c, Total: migrate.Counts{Applied: i + 1}})
	}
	b.clear()
	assert.Contains(t, out.String(), "\r\033[K4/4 100.0% | s0 2✓ 0✗ | s1 2✓ 0✗ | 0 retries")
	assert.True(t, strings.HasSuffix(out.String(), "\r\033[K"))
	assert.False(t, isTerminal(&out))
}

// TestProgressLineCountsEveryOutcome: a target found up to date at apply
// time (another run migrated it) counts as done, and the targets of a shard
// found down at planning, which are not among the plan's changes, neither
// leave the line short of 100 % nor push it past.
func TestProgressLineCountsEveryOutcome(t *testing.T) {
	var out bytes.Buffer
	b := &progressLine{w: &out, shards: make(map[string]migrate.Counts), total: 2, start: time.Now()}
	for _, p := range []migrate.Progress{
		{Target: migrate.Target{Shard: "s0"}, Outcome: migrate.OutcomeApplied, Total: migrate.Counts{Applied: 1}},
		{Target: migrate.Target{Shard: "s0"}, Outcome: migrate.OutcomeUpToDate, Total: migrate.Counts{Applied: 1, UpToDate: 1}},
		{Target: migrate.Target{Shard: "s1"}, Outcome: migrate.OutcomeFailed, Total: migrate.Counts{Applied: 1, UpToDate: 1, Failed: 1}},
	} {
		b.update(p)
	}
	assert.Contains(t, out.String(), "3/3 100.0%")
}

// TestMigrateCounts: a count below what it can mean is refused before the
// shards are opened (nothing listens on port 1 of the loopback).
func TestMigrateCounts(t *testing.T) {
	for _, bad := range [][]string{
		{"--concurrency", "0"}, {"--concurrency", "-2"}, {"--batch", "-1"}, {"--canary", "-1"},
		{"--failure-budget", "-1"}, {"--retries", "-1"},
	} {
		for _, sub := range []string{"plan", "apply"} {
			var out bytes.Buffer
			args := append([]string{"migrate", sub, "--shard", "s0=postgres://postgres@127.0.0.1:1/x"}, bad...)
			err := run(context.Background(), args, &out, &out)
			require.ErrorContains(t, err, bad[0]+" "+bad[1]+": must be at least", out.String())
		}
	}
}
