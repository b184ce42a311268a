package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHelpSucceeds: -h on a subcommand prints its usage and succeeds; it
// starts nothing and needs no registry.
func TestHelpSucceeds(t *testing.T) {
	for _, args := range [][]string{
		{"tenants", "create", "-h"},
		{"tenants", "list", "--help"},
		{"tenants", "moves", "-h"},
		{"tenants", "offboardings", "-h"},
		{"demo", "-h"},
		{"top", "-h"},
		{"shards", "add", "-h"},
		{"shards", "list", "-h"},
		{"bench", "load", "-h"},
		{"migrate", "plan", "-h"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, &out, &out)
		require.NoError(t, err, "tenantctl %s", strings.Join(args, " "))
	}
}

// TestNoArguments: the commands that take only flags refuse arguments, and
// with them the flags after an argument, which the flag package leaves
// unparsed. The context is cancelled: a command that runs anyway stops at
// once.
func TestNoArguments(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, args := range [][]string{
		{"top", "--shard", "s0=postgres://postgres@127.0.0.1:1/x", "extra", "--once"},
		{"demo", "extra"},
		{"demo", "extra", "-keep"},
		{"bench", "load", "extra", "-rate", "2"},
	} {
		var out bytes.Buffer
		err := run(ctx, args, &out, &out)
		require.ErrorContains(t, err, "unexpected arguments", "tenantctl %s\n%s", strings.Join(args, " "), out.String())
		require.ErrorContains(t, err, `"extra"`)
	}
}
