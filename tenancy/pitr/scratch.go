package pitr

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/internal/pgserver"
)

// scratch is a throwaway cluster recovered from a base backup.
type scratch struct {
	dir, data, logPath string
	port               int
	cred               *syscall.Credential
	reaper             *pgserver.Reaper
	pm                 *pgserver.Postmaster
}

// newScratch creates the scratch directory (private, owned by the server's
// user) and its reaper, which removes it if we die.
func newScratch(parent, binDir string) (*scratch, error) {
	cred, err := pgserver.RunAs()
	if err != nil {
		return nil, err
	}
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "tenantry-pitr-")
	if err != nil {
		return nil, err
	}
	s := &scratch{dir: dir, data: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "postgres.log"), cred: cred}
	if err := errors.Join(os.Chmod(dir, 0o700), pgserver.Chown(dir, cred)); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	if s.reaper, err = pgserver.StartReaper(binDir, s.data, dir, cred); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return s, nil
}

// remove stops the server (immediately: nothing in it is kept) and removes
// the directory.
func (s *scratch) remove() error {
	var errs []error
	if s.pm != nil && s.pm.Running() {
		errs = append(errs, s.pm.Signal(syscall.SIGQUIT, time.Minute))
	}
	s.reaper.Reap() // stops a server we lost track of, removes the directory
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// extract unpacks base.tar into the data directory, as the server's user.
func (s *scratch) extract(ctx context.Context, tarPath string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(s.data, 0o700); err != nil {
		return err
	}
	if err := pgserver.Chown(s.data, s.cred); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarPath, err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%s: entry %q outside the data directory", tarPath, h.Name)
		}
		path := filepath.Join(s.data, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if name == "." {
				continue
			}
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(out, tr, buf)
			if err = errors.Join(err, out.Close()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			return fmt.Errorf("%w: base backup has a symbolic link %s (a tablespace?)", ErrUnsupported, h.Name)
		default:
			continue
		}
		if err := pgserver.Chown(path, s.cred); err != nil {
			return err
		}
	}
}

// recoveryTime formats T for recovery_target_time.
func recoveryTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
}

// configure writes what recovery needs besides the command line: the
// recovery.signal file, our own pg_hba.conf (trust on the private socket
// only) and an empty pg_ident.conf, and an empty postgresql.conf when the
// shard keeps its configuration outside the data directory (Debian).
func (s *scratch) configure() error {
	files := map[string]string{
		filepath.Join(s.data, "recovery.signal"): "",
		filepath.Join(s.dir, "pg_hba.conf"):      "local all all trust\n",
		filepath.Join(s.dir, "pg_ident.conf"):    "",
	}
	if _, err := os.Stat(filepath.Join(s.data, "postgresql.conf")); errors.Is(err, os.ErrNotExist) {
		files[filepath.Join(s.data, "postgresql.conf")] = ""
	}
	// A standby.signal would make the scratch cluster wait for more WAL
	// forever instead of promoting.
	os.Remove(filepath.Join(s.data, "standby.signal"))
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return err
		}
		if err := pgserver.Chown(path, s.cred); err != nil {
			return err
		}
	}
	return nil
}

// settings are the scratch server's command-line settings, which override
// whatever the shard's configuration in the base backup says.
func (s *scratch) settings(restoreCommand string, at time.Time, extra map[string]string) map[string]string {
	m := map[string]string{
		"listen_addresses":          "", // no TCP: it holds every tenant of the shard
		"port":                      strconv.Itoa(s.port),
		"unix_socket_directories":   s.dir,
		"unix_socket_permissions":   "0700",
		"hba_file":                  filepath.Join(s.dir, "pg_hba.conf"),
		"ident_file":                filepath.Join(s.dir, "pg_ident.conf"),
		"cluster_name":              "tenantry-pitr",
		"archive_mode":              "off", // never into the shard's archive
		"restore_command":           restoreCommand,
		"recovery_target_time":      recoveryTime(at),
		"recovery_target_inclusive": "on",
		"recovery_target_timeline":  "latest",
		"recovery_target_action":    "promote",
		"primary_conninfo":          "",
		"primary_slot_name":         "",
		"hot_standby":               "off", // no queries before promotion; no checks of the primary's limits
		"ssl":                       "off", // the shard's certificates are not in the data directory
		"logging_collector":         "off",
		"log_destination":           "stderr",
		"lc_messages":               "C", // we read the log
		"fsync":                     "off",
		"synchronous_commit":        "off",
		"full_page_writes":          "off",
		"shared_buffers":            "128MB",
		"max_connections":           "30",
		"max_wal_senders":           "0",
		"max_replication_slots":     "0",
		"wal_level":                 "replica",
		"autovacuum":                "off",
		"timezone":                  "UTC",
		"log_timezone":              "UTC",
	}
	maps.Copy(m, extra)
	return m
}

// start starts the server and waits until it has recovered to the target
// and promoted, the server exits, or ctx ends.
func (s *scratch) start(ctx context.Context, binDir string, settings map[string]string, user, database string) error {
	port, err := pgserver.FreePort()
	if err != nil {
		return err
	}
	s.port = port
	settings["port"] = strconv.Itoa(port)
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := pgserver.Chown(s.logPath, s.cred); err != nil {
		return err
	}
	var args []string
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", k+"="+settings[k])
	}
	if s.pm, err = pgserver.Start(binDir, s.dir, s.data, s.cred, logf, args...); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = s.dir, uint16(port), user, database
	cfg.Fallbacks = nil
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.ConnectConfig(cctx, cfg)
		if err == nil {
			var inRecovery bool
			err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			conn.Close(cctx)
			cancel()
			if err == nil && !inRecovery {
				return nil
			}
		} else {
			cancel()
			var pgErr *pgconn.PgError
			// 57P03: starting up / in recovery; anything else from the
			// server (a missing role or database) will not go away.
			if errors.As(err, &pgErr) && pgErr.Code != "57P03" {
				return &RecoveryError{Kind: ErrRecovery, Reason: "connecting to the recovered cluster: " + err.Error(), Log: s.logTail()}
			}
		}
		select {
		case <-s.pm.Exited():
			return s.exitError()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var notReachedRE = regexp.MustCompile(`recovery ended before configured recovery target was reached`)

// exitError explains why the scratch server exited during recovery.
func (s *scratch) exitError() error {
	tail := s.logTail()
	kind, reason := ErrRecovery, fmt.Sprintf("postgres exited during recovery (%v)", s.pm.Cmd.ProcessState)
	if notReachedRE.MatchString(tail) {
		kind, reason = ErrNotArchived, "the archived WAL ends before the requested time: no transaction after it is archived yet"
	}
	return &RecoveryError{Kind: kind, Reason: reason, Log: tail}
}

func (s *scratch) logTail() string { return pgserver.ReadTail(s.logPath, 0, 4<<10) }

var lastTxRE = regexp.MustCompile(`last completed transaction was at log time ([0-9-]+ [0-9:.]+(?:[+-][0-9:]+)?)`)

// recoveredTo returns the commit time of the last transaction recovery
// replayed, from the server log; zero if it does not say.
func (s *scratch) recoveredTo() time.Time {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return time.Time{}
	}
	m := lastTxRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return time.Time{}
	}
	last := string(m[len(m)-1][1])
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05-07"} {
		if t, err := time.Parse(layout, last); err == nil {
			return t
		}
	}
	return time.Time{}
}
