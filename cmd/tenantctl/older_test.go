package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
)

// From a review: shards add checked for the default role names only, so a
// deployment with its own roles could not add a shard; and once listings
// stopped initializing the registry, an older registry (without the jobs
// and offboardings tables) answered "not initialized" to them.
func TestCustomRolesAndOlderRegistry(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	suffix := fmt.Sprint(os.Getpid())
	regDB, shardDB := "older_reg_"+suffix, "older_app_"+suffix
	require.NoError(t, c.CreateDatabase(ctx, regDB))
	require.NoError(t, c.CreateDatabase(ctx, shardDB))
	regDSN := c.DSN("postgres", regDB)
	ctl := func(args ...string) (string, error) {
		var out bytes.Buffer
		full := append(append(args[:2:2], "-registry", regDSN), args[2:]...)
		err := run(ctx, full, &out, &out)
		return out.String(), err
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres", shardDB))
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, r := range []string{"my_owner", "my_app", "my_admin"} {
		_, err = conn.Exec(ctx, "DO $$ BEGIN CREATE ROLE "+r+"; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
		require.NoError(t, err)
	}
	out, err := ctl("shards", "add", "-name", "s0", "-dsn", c.DSN("postgres", shardDB),
		"-owner-role", "my_owner", "-app-role", "my_app", "-admin-role", "my_admin")
	require.NoError(t, err, out)

	rc, err := pgx.Connect(ctx, regDSN)
	require.NoError(t, err)
	defer rc.Close(ctx)
	_, err = rc.Exec(ctx, "DROP TABLE jobs CASCADE; DROP TABLE offboardings CASCADE")
	require.NoError(t, err)
	for _, args := range [][]string{{"tenants", "moves"}, {"tenants", "offboardings"}, {"tenants", "list"}} {
		out, err := ctl(args...)
		require.NoError(t, err, "%v: %s", args, out)
	}

	// A database that holds no registry stays empty.
	emptyDB := "older_empty_" + suffix
	require.NoError(t, c.CreateDatabase(ctx, emptyDB))
	var o bytes.Buffer
	err = run(ctx, []string{"tenants", "moves", "-registry", c.DSN("postgres", emptyDB)}, &o, &o)
	require.ErrorContains(t, err, "not initialized")
	ec, err := pgx.Connect(ctx, c.DSN("postgres", emptyDB))
	require.NoError(t, err)
	defer ec.Close(ctx)
	var tables int
	require.NoError(t, ec.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables))
	require.Zero(t, tables)
}
