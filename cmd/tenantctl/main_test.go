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
