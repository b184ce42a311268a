// Package pgtest starts throwaway PostgreSQL clusters for tests, benchmarks
// and demos, from the server binaries installed on the machine (initdb,
// pg_ctl, postgres; see FindBinDir). It never mocks and never skips: when
// PostgreSQL cannot be started, the test fails and says how to fix it.
//
// Each cluster lives in its own temporary directory (data directory, server
// log, unix socket), listens on a free port of 127.0.0.1 with trust
// authentication and wal_level=logical, and trades durability for speed
// (fsync=off). When the tests run as root, the server programs run as the
// postgres OS user, since PostgreSQL refuses to run as root.
//
// With Options.Archive a cluster archives its WAL as a shard that supports
// point-in-time restore does (archive_mode = on, an archive_command that
// copies each segment into Cluster.ArchiveDir, archive_timeout from
// Options.ArchiveTimeout, 60 s by default); see tenancy/pitr.
//
// Binary discovery, running as the postgres user and the reaper live in
// internal/pgserver, which production code may use too.
//
// A small reaper process watches every cluster: when the test process ends
// for any reason, including a panic or SIGKILL, it stops the server and
// removes the directory. Close does the same at once.
//
// Most tests share the clusters of their test binary through Shards, which
// starts them on first use; Main closes them at the end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		shards := pgtest.Shards(t, 2)
//		conn, err := pgx.Connect(t.Context(), shards[0].SuperuserDSN())
//		...
//	}
//
// Tests that break a server on purpose (Kill, Stop, Restart) should Start a
// cluster of their own rather than use the shared ones.
//
// When the environment variable TENANTRY_TEST_PG_DSNS holds comma-separated
// superuser URLs (postgres://...) of running servers, Shards returns those
// servers instead of starting any; their lifecycle methods return
// ErrExternal.
//
// The package is Unix-only.
package pgtest
