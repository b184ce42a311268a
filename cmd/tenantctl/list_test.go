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

// TestListingCreatesNothing: the listing subcommands on a database without
// registry tables say so and leave it as it is.
func TestListingCreatesNothing(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	db := "ctl_empty_" + fmt.Sprint(os.Getpid())
	require.NoError(t, c.CreateDatabase(ctx, db))
	dsn := c.DSN("postgres", db)
	for _, args := range [][]string{
		{"tenants", "list"},
		{"tenants", "moves"},
		{"tenants", "moves", "acme"},
		{"tenants", "offboardings"},
		{"tenants", "offboardings", "-open", "acme"},
		{"tenants", "purge", "-dry-run"},
	} {
		var out bytes.Buffer
		full := append(append(args[:2:2], "-registry", dsn), args[2:]...)
		err := run(ctx, full, &out, &out)
		require.ErrorIs(t, err, registry.ErrNotInitialized, "tenantctl %s\n%s", strings.Join(args, " "), out.String())
	}
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, tables)
}

// TestTenantsListState: tenants list refuses a state no tenant can be in,
// before it connects (nothing listens on port 1 of the loopback).
func TestTenantsListState(t *testing.T) {
	reg := "postgres://postgres@127.0.0.1:1/x"
	var out bytes.Buffer
	err := run(context.Background(), []string{"tenants", "list", "-registry", reg, "-state", "bogus"}, &out, &out)
	require.ErrorContains(t, err, `-state "bogus": want one of provisioning, active, read_only, suspended, moving, offboarded, deleted`)
	err = run(context.Background(), []string{"tenants", "list", "-registry", reg, "-state", string(registry.ReadOnly)}, &out, &out)
	require.ErrorContains(t, err, "connect")
}
