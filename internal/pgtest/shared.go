package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvDSNs names the environment variable that makes Shards use running
// servers instead of starting clusters: comma-separated superuser URLs,
// e.g. "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".
const EnvDSNs = "TENANTRY_TEST_PG_DSNS"

// shared holds the clusters that Shards hands out and Main closes.
var shared struct {
	mu       sync.Mutex
	clusters []*Cluster
}

// Shards returns the first n clusters shared by the tests of this test
// binary, starting any that are missing (concurrently) on first use. The
// clusters are named shard0, shard1, ...; use Main in TestMain to close them.
// If they cannot be had, the test fails with the reason, e.g. how to
// install PostgreSQL.
//
// Tests must not Kill, Stop or Close shared clusters, and should use
// databases of their own (CreateDatabase) where they could disturb others.
func Shards(tb testing.TB, n int) []*Cluster {
	tb.Helper()
	clusters, err := sharedClusters(n)
	if err != nil {
		tb.Fatalf("pgtest: cannot provide %d PostgreSQL cluster(s): %v", n, err)
	}
	return clusters
}

func sharedClusters(n int) ([]*Cluster, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if dsns := os.Getenv(EnvDSNs); dsns != "" {
		if shared.clusters == nil {
			external, err := externalClusters(dsns)
			if err != nil {
				return nil, err
			}
			shared.clusters = external
		}
		if n > len(shared.clusters) {
			return nil, fmt.Errorf("%s names %d server(s), but the test needs %d", EnvDSNs, len(shared.clusters), n)
		}
		return slices.Clone(shared.clusters[:n]), nil
	}

	have := len(shared.clusters)
	if n > have {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		started := make([]*Cluster, n-have)
		errs := make([]error, n-have)
		var wg sync.WaitGroup
		for i := range started {
			wg.Go(func() {
				started[i], errs[i] = Start(ctx, Options{Name: "shard" + strconv.Itoa(have+i)})
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			for _, c := range started {
				if c != nil {
					c.Close()
				}
			}
			return nil, err
		}
		shared.clusters = append(shared.clusters, started...)
	}
	return slices.Clone(shared.clusters[:n]), nil
}

// externalClusters wraps the servers named in the value of EnvDSNs.
func externalClusters(dsns string) ([]*Cluster, error) {
	binDir, _ := FindBinDir() // optional: only for callers running pg_dump & co.
	var clusters []*Cluster
	for i, dsn := range strings.Split(dsns, ",") {
		dsn = strings.TrimSpace(dsn)
		if dsn == "" {
			continue
		}
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() == "" {
			// Not echoed: it may hold a password.
			return nil, fmt.Errorf("%s: entry %d is not a postgres://user@host:port/database URL", EnvDSNs, i+1)
		}
		port := 5432
		if p := u.Port(); p != "" {
			if port, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("%s: port of %q: %w", EnvDSNs, u.Redacted(), err)
			}
		}
		clusters = append(clusters, &Cluster{
			name:   "external" + strconv.Itoa(len(clusters)),
			host:   u.Hostname(),
			port:   port,
			binDir: binDir,
			extDSN: u,
		})
	}
	if len(clusters) == 0 {
		return nil, fmt.Errorf("%s is set but names no server", EnvDSNs)
	}
	return clusters, nil
}

// Main runs the tests, then closes the clusters started by Shards. Use it
// in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Without it, the clusters are still removed when the test binary exits,
// by their reapers.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var errs []error
	for _, c := range shared.clusters {
		errs = append(errs, c.Close())
	}
	shared.clusters = nil
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
