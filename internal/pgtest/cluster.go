package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgserver"
)

// ErrExternal is returned by the lifecycle methods of a Cluster that wraps
// an existing server named in TENANTRY_TEST_PG_DSNS.
var ErrExternal = errors.New("pgtest: external server, its lifecycle is not managed here")

// Options configure Start.
type Options struct {
	// Name identifies the cluster in its temporary directory's name, its
	// cluster_name (shown in ps) and errors, e.g. "shard0".
	Name string
	// Settings are extra postgresql.conf settings. They override the
	// defaults, except port, which Start picks.
	Settings map[string]string
	// Archive turns on WAL archiving (archive_mode = on) into ArchiveDir,
	// as a shard that supports point-in-time restore does (see
	// tenancy/pitr). The archive_command is pgserver.ArchiveCommand's:
	// test ! -f, cp to a temporary name, mv.
	Archive bool
	// ArchiveDir is where WAL segments are archived; empty: the directory
	// "wal_archive" in the cluster's own temporary directory (removed with
	// the cluster; see Cluster.ArchiveDir). Start creates it if missing and
	// gives it to the server's user; when running as root, it and its
	// parents must be reachable by the postgres user (t.TempDir() is not).
	ArchiveDir string
	// ArchiveTimeout is archive_timeout: a segment with any WAL in it is
	// archived at the latest this long after its first record, which
	// bounds the recovery point (RPO) of a point-in-time restore. Zero: 60
	// s; tests may use a few seconds. Settings may override it.
	ArchiveTimeout time.Duration
}

// Cluster is one running throwaway PostgreSQL server. Its methods are safe
// for concurrent use.
type Cluster struct {
	name    string
	host    string
	port    int
	binDir  string
	dir     string              // temporary directory: data/, the log, the socket
	cred    *syscall.Credential // whom server programs run as; nil: as ourselves
	extDSN  *url.URL            // the given superuser URL of an external server
	archive string              // WAL archive directory; "" when not archiving

	mu         sync.Mutex // serializes the lifecycle methods
	closed     bool
	postmaster *pgserver.Postmaster
	reaper     *pgserver.Reaper
}

const (
	logFile  = "postgres.log"
	confFile = "pgtest.conf" // our settings, included from postgresql.conf
)

// Start initializes and starts a new cluster in a fresh temporary directory.
// ctx bounds the start only, not the cluster's life: call Close when done.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgserver.RunAs()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	name := opts.Name
	if name == "" {
		name = "pg"
	}
	dir, err := os.MkdirTemp("", "pgtest-"+strings.ReplaceAll(name, string(filepath.Separator), "_")+"-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w", name, err)
	}
	c := &Cluster{name: name, host: "127.0.0.1", binDir: binDir, dir: dir, cred: cred}
	if err := c.chown(dir); err != nil {
		return nil, errors.Join(fmt.Errorf("pgtest: %s: %w", name, err), os.RemoveAll(dir))
	}
	if err := c.startReaper(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	settings := opts.Settings
	if opts.Archive {
		if settings, err = c.archiveSettings(opts); err != nil {
			return nil, errors.Join(err, c.Close())
		}
	}
	if err := c.init(ctx, settings); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// archiveSettings creates the archive directory and returns the settings
// with archiving turned on.
func (c *Cluster) archiveSettings(opts Options) (map[string]string, error) {
	c.archive = opts.ArchiveDir
	if c.archive == "" {
		c.archive = filepath.Join(c.dir, "wal_archive")
	}
	if err := os.MkdirAll(c.archive, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %s: archive directory: %w", c.name, err)
	}
	if err := c.chown(c.archive); err != nil {
		return nil, fmt.Errorf("pgtest: %s: archive directory: %w", c.name, err)
	}
	cmd, err := pgserver.ArchiveCommand(c.archive)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w", c.name, err)
	}
	timeout := opts.ArchiveTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	settings := map[string]string{
		"archive_mode":    "on",
		"archive_command": cmd,
		"archive_timeout": strconv.Itoa(max(int(timeout.Seconds()), 1)) + "s",
	}
	maps.Copy(settings, opts.Settings)
	return settings, nil
}

// init runs initdb and starts the server on a free port, trying another
// port if the chosen one was taken meanwhile.
func (c *Cluster) init(ctx context.Context, extra map[string]string) error {
	initdb := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"), "-D", c.DataDir(),
		"-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = c.dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: %s: initdb: %w\n%s", c.name, err, out)
	}
	conf, err := os.OpenFile(filepath.Join(c.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(conf, "\ninclude '%s'\n", confFile)
		err = errors.Join(err, conf.Close())
	}
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w", c.name, err)
	}
	for attempt := 1; ; attempt++ {
		if c.port, err = pgserver.FreePort(); err != nil {
			return fmt.Errorf("pgtest: %s: %w", c.name, err)
		}
		if err := c.writeConf(extra); err != nil {
			return fmt.Errorf("pgtest: %s: %w", c.name, err)
		}
		serverLog, err := c.start(ctx)
		if err == nil {
			return nil
		}
		if attempt == 3 || !strings.Contains(serverLog, "already in use") {
			return fmt.Errorf("pgtest: %s: start on port %d: %w\nserver log:\n%s", c.name, c.port, err, serverLog)
		}
	}
}

func (c *Cluster) writeConf(extra map[string]string) error {
	settings := map[string]string{
		"cluster_name":            c.name,
		"listen_addresses":        c.host,
		"unix_socket_directories": c.dir,
		"logging_collector":       "off", // stderr goes to the log file
		"wal_level":               "logical",
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"max_connections":         "200",
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"shared_buffers":          "64MB",
	}
	maps.Copy(settings, extra)
	settings["port"] = strconv.Itoa(c.port)
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	path := filepath.Join(c.DataDir(), confFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return c.chown(path)
}

// start starts the postmaster as our child, so that it can be waited for
// (an orphan would linger as a zombie after Kill, its PID blocking the lock
// file), and waits until it takes connections. On failure it also returns
// what the server logged meanwhile.
func (c *Cluster) start(ctx context.Context) (serverLog string, err error) {
	logPath := filepath.Join(c.dir, logFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close() // the server has its own descriptor
	offset, _ := logf.Seek(0, io.SeekEnd)
	if err := c.chown(logPath); err != nil {
		return "", err
	}
	pm, err := pgserver.Start(c.binDir, c.dir, c.DataDir(), c.cred, logf)
	if err != nil {
		return "", err
	}
	c.postmaster = pm
	if err := c.waitReady(ctx); err != nil {
		pm.Cmd.Process.Kill()
		<-pm.Exited()
		return pgserver.ReadTail(logPath, offset, 4<<10), err
	}
	return "", nil
}

// waitReady waits until the server takes connections, or gives up when it
// exits or after a minute.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.SuperuserDSN())
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.postmaster.Exited():
			return fmt.Errorf("postgres exited: %v", c.postmaster.Cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running reports whether the postmaster is up.
func (c *Cluster) running() bool { return c.postmaster != nil && c.postmaster.Running() }

// signal sends sig to the postmaster and waits until it has exited.
func (c *Cluster) signal(sig os.Signal) error {
	if !c.running() {
		return errors.New("server not running")
	}
	return c.postmaster.Signal(sig, time.Minute)
}

func (c *Cluster) chown(path string) error { return pgserver.Chown(path, c.cred) }

// startReaper starts the process that stops the server and removes its
// directory when Close closes its lifeline or the test process dies in
// whatever way, including a panic or SIGKILL.
func (c *Cluster) startReaper() error {
	r, err := pgserver.StartReaper(c.binDir, c.DataDir(), c.dir, c.cred)
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w", c.name, err)
	}
	c.reaper = r
	return nil
}

// Port returns the server's TCP port.
func (c *Cluster) Port() int { return c.port }

// Host returns the server's address, "127.0.0.1" unless external.
func (c *Cluster) Host() string { return c.host }

// DataDir returns the data directory; "" for an external server.
func (c *Cluster) DataDir() string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, "data")
}

// ArchiveDir returns the directory the server archives WAL into; "" when
// it was started without Options.Archive.
func (c *Cluster) ArchiveDir() string { return c.archive }

// BinDir returns the directory of the server binaries, for running pg_dump
// and the like; "" for an external server when none are installed.
func (c *Cluster) BinDir() string { return c.binDir }

// DSN returns a URL to connect as user to database, e.g.
// "postgres://user@127.0.0.1:5433/database?sslmode=disable". Any user may
// connect without a password (trust authentication). For an external
// server, the URL is its superuser URL with user and database replaced; the
// password is kept only for the same user.
func (c *Cluster) DSN(user, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(c.host, strconv.Itoa(c.port)),
		RawQuery: "sslmode=disable",
	}
	if c.extDSN != nil {
		u = *c.extDSN
	}
	if u.User == nil || u.User.Username() != user {
		u.User = url.User(user)
	}
	u.Path, u.RawPath = "/"+database, ""
	return u.String()
}

// SuperuserDSN returns a URL to connect as postgres to database postgres,
// or the URL given for an external server.
func (c *Cluster) SuperuserDSN() string {
	if c.extDSN != nil {
		return c.extDSN.String()
	}
	return c.DSN("postgres", "postgres")
}

// CreateDatabase creates a database; name is quoted as an identifier.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.SuperuserDSN())
	if err != nil {
		return fmt.Errorf("pgtest: %s: create database %q: %w", c.name, name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("pgtest: %s: create database %q: %w", c.name, name, err)
	}
	return nil
}

// Kill crashes the server: it sends SIGKILL to the postmaster and to its
// child processes (backends, checkpointer, ...), as the OOM killer or a
// power cut would, and waits until the postmaster is gone. Killing the
// postmaster alone would leave busy backends running on, and Restart
// unable to start until they end. The data directory stays for Restart,
// which then goes through crash recovery.
func (c *Cluster) Kill() error {
	if c.extDSN != nil {
		return ErrExternal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running() {
		return fmt.Errorf("pgtest: %s: kill: server not running", c.name)
	}
	// Stopped, the postmaster forks no children while they are listed.
	pid := c.postmaster.Cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if state, _, err := procStat(pid); err != nil || state == "T" {
			break
		}
	}
	children := childPIDs(pid)
	if err := c.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("pgtest: %s: kill: %w", c.name, err)
	}
	for _, child := range children {
		syscall.Kill(child, syscall.SIGKILL)
	}
	return nil
}

// procStat returns the state and parent of process pid, read from /proc.
func procStat(pid int) (state string, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// "pid (comm) state ppid ...", where comm may hold anything.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return "", 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err
}

// childPIDs lists the child processes of pid; none where /proc is missing.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(child); err == nil && ppid == pid {
			pids = append(pids, child)
		}
	}
	return pids
}

// Restart starts the server again after Kill or Stop, on the same port and
// data directory. It waits up to 10 s for processes of the old server to go.
func (c *Cluster) Restart(ctx context.Context) error {
	if c.extDSN != nil {
		return ErrExternal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return fmt.Errorf("pgtest: %s: restart: cluster closed", c.name)
	case c.running():
		return fmt.Errorf("pgtest: %s: restart: server already running", c.name)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		serverLog, err := c.start(ctx)
		if err == nil {
			return nil
		}
		// Leftovers of a killed server still attached to shared memory.
		leftovers := strings.Contains(serverLog, "is still in use")
		if !leftovers || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pgtest: %s: restart on port %d: %w\nserver log:\n%s", c.name, c.port, err, serverLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down in fast mode (open sessions are ended) and
// keeps the data directory for Restart.
func (c *Cluster) Stop() error {
	if c.extDSN != nil {
		return ErrExternal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("pgtest: %s: stop: %w", c.name, err)
	}
	return nil
}

// Close stops the server in immediate mode and removes its directory. It is
// idempotent, and a no-op for an external server.
func (c *Cluster) Close() error {
	if c.extDSN != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.running() {
		errs = append(errs, c.signal(syscall.SIGQUIT))
	}
	// The reaper removes the directory; removing it here as well catches
	// whatever the reaper could not.
	c.reaper.Reap()
	errs = append(errs, os.RemoveAll(c.dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgtest: %s: close: %w", c.name, err)
	}
	return nil
}
