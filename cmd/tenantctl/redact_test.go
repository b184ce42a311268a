package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPasswordsNotShown: neither usage output nor the errors of malformed
// shard values show a password from the command line or the environment.
func TestPasswordsNotShown(t *testing.T) {
	const secret = "S3cretPW"
	// Port 1 of the loopback: nothing answers there.
	t.Setenv(registryEnv, "postgres://postgres:"+secret+"@127.0.0.1:1/x")

	// A flag error prints the usage with every flag's default.
	var out bytes.Buffer
	fs := flag.NewFlagSet("tenants show", flag.ContinueOnError)
	fs.SetOutput(&out)
	reg := registryFlag(fs)
	require.Error(t, fs.Parse([]string{"-bogus", "acme"}))
	require.Contains(t, out.String(), "-registry")
	require.NotContains(t, out.String(), secret)
	require.Empty(t, *reg)

	// Without -registry, the registry is $TENANTRY_REGISTRY.
	s, err := openRegistry(context.Background(), *reg, false)
	if err == nil {
		s.Close()
	}
	require.ErrorContains(t, err, "connect", "openRegistry must read $%s", registryEnv)
	require.NotContains(t, err.Error(), secret)

	bad := []string{
		"s0=mysql://postgres:" + secret + "@127.0.0.1:5432/x",
		"postgres://postgres:" + secret + "@127.0.0.1:5432/x?sslmode=disable",
		"s0=host=127.0.0.1 password=" + secret,
		"password=" + secret,
	}
	for _, v := range bad {
		for _, args := range [][]string{
			{"top", "--once", "--shard", v},
			{"migrate", "plan", "--shard", v},
			{"migrate", "status", "--shard", v},
			{"migrate", "diff", "next", "--dir", t.TempDir(), "--shard", v},
		} {
			var out bytes.Buffer
			err := run(context.Background(), args, &out, &out)
			require.ErrorContains(t, err, "want name=postgres://", "%q", args)
			require.NotContains(t, err.Error(), secret)
			require.NotContains(t, out.String(), secret)
		}
	}
	var out2 bytes.Buffer
	err = run(context.Background(), []string{"migrate", "plan", "--shard", "s0=postgres://127.0.0.1:1/x", "--shard", "s0=postgres://127.0.0.1:2/x"}, &out2, &out2)
	require.ErrorContains(t, err, `shard "s0" given twice`)
	t.Setenv(envShards, "s0=postgres://postgres@127.0.0.1:5432/x,"+strings.Join(bad[:2], " "))
	_, err = shardsFromEnv()
	require.Error(t, err)
	require.NotContains(t, err.Error(), secret)
	t.Setenv(envShards, "host=127.0.0.1 password="+secret)
	_, err = shardsFromEnv()
	require.Error(t, err)
	require.NotContains(t, err.Error(), secret)
}
