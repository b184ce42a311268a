package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/loadtest"
)

// victimsRow parses the victims' row of a load report: offered, ok, and
// the error columns.
func victimsRow(t *testing.T, out string) (offered, ok, errs int) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^victims\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no victims row in:\n%s", out)
	n := make([]int, len(m))
	for i := 2; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	return n[2], n[3], n[4] + n[5] + n[6] + n[7] + n[8]
}

// TestBenchLoad runs tenantctl bench load on throwaway clusters and
// against an existing registry (-registry, -aggressor-tenant).
func TestBenchLoad(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	err := run(ctx, []string{"bench", "load", "-tenants", "10", "-shards", "1", "-rate", "10", "-duration", "1s", "-warmup", "200ms", "-progress", "never", "-baseline=false"}, &out, &out)
	require.NoError(t, err, out.String())
	offered, ok, errs := victimsRow(t, out.String())
	require.Equal(t, 90, offered, "9 victims at 10 req/s for 1 s:\n%s", out.String())
	require.Equal(t, offered, ok, out.String())
	require.Zero(t, errs, out.String())
	require.Regexp(t, `(?m)^aggressor\s+1\s+1000\s`, out.String(), "the aggressor offers 100x a victim's rate")
	require.Contains(t, out.String(), "removed the throwaway clusters")
	require.Contains(t, out.String(), "start the example app on loopback", "HTTP is the default target")
	require.Regexp(t, `(?m)^(PASS|MISS): victims' p99 \S+ ms \(target < 50\.00 ms\), 0 victim errors`, out.String())

	f, err := loadtest.StartFleet(ctx, 1)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	ts, err := loadtest.Provision(ctx, f.Store, loadtest.Spec{Tenants: 4, Prefix: "ext"})
	require.NoError(t, err)
	out.Reset()
	err = run(ctx, []string{"bench", "load", "-registry", f.RegistryDSN, "-aggressor-tenant", ts[2].Slug, "-rate", "10",
		"-duration", "1s", "-warmup", "200ms", "-writes", "0.5", "-progress", "never", "-target", "stack"}, &out, &out)
	require.NoError(t, err, out.String())
	require.Contains(t, out.String(), "4 tenants")
	require.Contains(t, out.String(), "start the runtime stack")
	// With the baseline (the default): both phases, victims without errors.
	base, withAgg, found := strings.Cut(out.String(), "with the aggressor (")
	require.True(t, found, out.String())
	for _, part := range []string{base, withAgg} {
		offered, ok, errs = victimsRow(t, part)
		require.InDelta(t, 30, offered, 3, "3 victims at 10 req/s for 1 s in 3 slices:\n%s", out.String())
		require.Equal(t, offered, ok, out.String())
		require.Zero(t, errs, out.String())
	}
	require.Contains(t, base, "no aggressor")
	require.Regexp(t, `(?m)^aggressor\s+1\s`, withAgg)
	require.Contains(t, out.String(), "victims' p99 with the aggressor / alone: ")
	require.Regexp(t, `(?m)^(PASS|MISS): victims' p99`, out.String())

	out.Reset()
	err = run(ctx, []string{"bench", "load", "-tenants", "1"}, &out, &out)
	require.ErrorContains(t, err, "at least 2")
	err = run(ctx, []string{"bench", "load", "-target", "grpc"}, &out, &out)
	require.ErrorContains(t, err, "want http or stack")
	err = run(ctx, []string{"bench"}, &out, &out)
	require.ErrorContains(t, err, "usage: tenantctl bench load")
	require.False(t, strings.Contains(out.String(), "FAILED"))
}

// TestBenchLoadFlags: values the run cannot honour are refused before any
// cluster starts (the context is cancelled: a run that starts anyway stops
// at once).
func TestBenchLoadFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, bad := range [][]string{
		{"-rate", "0"}, {"-rate", "-1"}, {"-duration", "0s"}, {"-duration", "-1s"}, {"-warmup", "-1s"},
		{"-rounds", "0"}, {"-shards", "0"}, {"-tenants", "1"}, {"-own-every", "0"}, {"-customers", "0"},
		{"-conns", "0"}, {"-http-conns", "0"}, {"-timeout", "0s"}, {"-aggressor", "0"}, {"-aggressor-cap", "0"},
		{"-writes", "-0.5"}, {"-writes", "2"}, {"-p99-target", "0s"},
	} {
		var out bytes.Buffer
		err := run(ctx, append([]string{"bench", "load", "-progress", "never"}, bad...), &out, &out)
		require.ErrorContains(t, err, "bench load: "+bad[0]+" must", "bench load %s\n%s", strings.Join(bad, " "), out.String())
		require.Empty(t, out.String(), "nothing starts")
	}
}
