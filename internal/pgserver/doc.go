// Package pgserver runs PostgreSQL server programs from Go: it finds the
// installed server binaries (FindBinDir), says whom they must run as
// (RunAs: the postgres OS user when we are root, which PostgreSQL refuses),
// starts a postmaster as a child process (Start) and watches a server
// directory with a reaper process that stops the server and removes the
// directory when its parent dies in whatever way (StartReaper).
//
// It is shared by the test helper internal/pgtest and by production code
// that needs a throwaway server, such as tenancy/pitr's scratch clusters,
// which must not import test helpers. Unix-only.
package pgserver
