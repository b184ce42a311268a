package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// startCluster starts a cluster of the test's own, closed at its end.
func startCluster(t *testing.T, opts pgtest.Options) *pgtest.Cluster {
	t.Helper()
	c, err := pgtest.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// queryOne runs a one-value query on a fresh connection, for up to 30 s
// (the tests start clusters in parallel: initdb keeps a small machine
// busy, and a down server refuses at once anyway).
func queryOne(ctx context.Context, dsn, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var v string
	return v, conn.QueryRow(ctx, sql).Scan(&v)
}

func TestStartSettings(t *testing.T) {
	t.Parallel()
	c := startCluster(t, pgtest.Options{
		Name:     "settings",
		Settings: map[string]string{"work_mem": "8MB", "max_connections": "50", "port": "1"},
	})
	for _, tt := range []struct{ setting, want string }{
		{"wal_level", "logical"},
		{"max_wal_senders", "10"},
		{"max_replication_slots", "10"},
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"shared_buffers", "64MB"},
		{"listen_addresses", "127.0.0.1"},
		{"unix_socket_directories", filepath.Dir(c.DataDir())},
		{"cluster_name", "settings"},
		{"server_encoding", "UTF8"},
		{"lc_collate", "C"},
		{"work_mem", "8MB"},            // extra
		{"max_connections", "50"},      // overridden default
		{"port", fmt.Sprint(c.Port())}, // not overridable
	} {
		t.Run(tt.setting, func(t *testing.T) {
			got, err := queryOne(t.Context(), c.SuperuserDSN(), "SHOW "+tt.setting)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("SHOW %s = %q, want %q", tt.setting, got, tt.want)
			}
		})
	}
	if c.Host() != "127.0.0.1" {
		t.Errorf("Host() = %q", c.Host())
	}
	if _, err := os.Stat(filepath.Join(c.BinDir(), "pg_dump")); err != nil {
		t.Errorf("BinDir() has no pg_dump: %v", err)
	}
}

func TestKillStopRestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t, pgtest.Options{Name: "faults"})
	port := c.Port()
	for _, tt := range []struct {
		name string
		down func(*pgtest.Cluster) error
	}{
		{"kill", (*pgtest.Cluster).Kill},
		{"stop", (*pgtest.Cluster).Stop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			conn, err := pgx.Connect(ctx, c.SuperuserDSN())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			// A busy backend, which notices no postmaster death by itself.
			busy := make(chan error, 1)
			go func() {
				_, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 1e10)")
				busy <- err
			}()
			waitActive(t, c)

			if err := tt.down(c); err != nil {
				t.Fatal(err)
			}
			if err := <-busy; err == nil {
				t.Error("busy query succeeded despite", tt.name)
			}
			if _, err := queryOne(ctx, c.SuperuserDSN(), "SELECT 1::text"); err == nil {
				t.Error("new connection works after", tt.name)
			}

			if err := c.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if c.Port() != port {
				t.Errorf("port changed from %d to %d", port, c.Port())
			}
			if _, err := queryOne(ctx, c.SuperuserDSN(), "SELECT 1::text"); err != nil {
				t.Errorf("after restart: %v", err)
			}
		})
	}
}

// waitActive waits until another backend of c runs a query (30 s at most).
func waitActive(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := queryOne(t.Context(), c.SuperuserDSN(), `SELECT count(*)::text FROM pg_stat_activity
			WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
		if err == nil && n != "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no active query after 30 s: %v", err)
		}
	}
}

func TestCloseRemovesDataDir(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(t.Context(), pgtest.Options{Name: "close"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.DataDir()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Dir(c.DataDir())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory still there after Close: %v", err)
	}
	if _, err := queryOne(t.Context(), c.SuperuserDSN(), "SELECT 1::text"); err == nil {
		t.Error("server still answers after Close")
	}
}

// TestReaperAfterCrash runs itself in a subprocess that starts a cluster and
// panics, and checks the reaper removes the cluster's directory.
func TestReaperAfterCrash(t *testing.T) {
	if os.Getenv("PGTEST_CRASH_CHILD") != "" {
		c, err := pgtest.Start(context.Background(), pgtest.Options{Name: "crash"})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("DIR=%s\n", filepath.Dir(c.DataDir()))
		panic("simulated crash")
	}
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestReaperAfterCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGTEST_CRASH_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child did not crash:\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^DIR=(.+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child printed no directory:\n%s", out)
	}
	dir := string(m[1])
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there 60 s after the test process died", dir)
		}
	}
}

func TestShards(t *testing.T) {
	t.Parallel()
	shards := pgtest.Shards(t, 2)
	if len(shards) != 2 || shards[0].Port() == shards[1].Port() {
		t.Fatalf("want 2 clusters on distinct ports, got %d: %v", len(shards), shards)
	}
	again := pgtest.Shards(t, 2)
	for i := range shards {
		if again[i] != shards[i] {
			t.Errorf("second call: shard %d is another cluster", i)
		}
		if got, err := queryOne(t.Context(), shards[i].SuperuserDSN(), "SHOW wal_level"); err != nil || got != "logical" {
			t.Errorf("shard %d: wal_level %q, %v", i, got, err)
		}
	}
	if first := pgtest.Shards(t, 1); len(first) != 1 || first[0] != shards[0] {
		t.Errorf("Shards(t, 1) = %v, want [%v]", first, shards[0])
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	c := pgtest.Shards(t, 1)[0]
	name := fmt.Sprintf(`Odd "db" %d`, time.Now().UnixNano())
	if err := c.CreateDatabase(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	got, err := queryOne(t.Context(), c.DSN("postgres", name), "SELECT current_database()")
	if err != nil || got != name {
		t.Errorf("current_database() = %q, %v; want %q", got, err, name)
	}
}

func TestArchive(t *testing.T) {
	t.Parallel()
	c := startCluster(t, pgtest.Options{Name: "archive", Archive: true, ArchiveTimeout: 2 * time.Second})
	if c.ArchiveDir() == "" || filepath.Dir(c.ArchiveDir()) != filepath.Dir(c.DataDir()) {
		t.Fatalf("ArchiveDir() = %q, want a directory beside %s", c.ArchiveDir(), c.DataDir())
	}
	for setting, want := range map[string]string{"archive_mode": "on", "archive_timeout": "2s"} {
		if got, err := queryOne(t.Context(), c.SuperuserDSN(), "SHOW "+setting); err != nil || got != want {
			t.Errorf("SHOW %s = %q, %v; want %q", setting, got, err, want)
		}
	}
	// A segment with WAL in it is switched and archived, under its name.
	seg, err := queryOne(t.Context(), c.SuperuserDSN(),
		"SELECT pg_walfile_name(pg_current_wal_lsn()) FROM (SELECT txid_current()) x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queryOne(t.Context(), c.SuperuserDSN(), "SELECT pg_switch_wal()::text"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fi, err := os.Stat(filepath.Join(c.ArchiveDir(), seg))
		if err == nil && fi.Size() == 16<<20 {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(c.ArchiveDir())
			t.Fatalf("segment %s not archived within 30 s (%v); archive holds %v", seg, err, entries)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(c.ArchiveDir(), "*.tmp")); len(matches) > 0 {
		t.Errorf("temporary files left in the archive: %v", matches)
	}
}
