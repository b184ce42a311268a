package pitr

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/internal/pgserver"
)

// ManifestFile is the file a complete base backup has in its directory,
// written last.
const ManifestFile = "tenantry-basebackup.json"

// BaseFormat is the format string of ManifestFile.
const BaseFormat = "tenantry-basebackup/1"

// BaseBackupInfo describes one base backup: DIR/<Label>/ holds pg_basebackup's
// base.tar and backup_manifest, and this, as ManifestFile.
type BaseBackupInfo struct {
	Format string `json:"format"`
	Label  string `json:"label"`
	// Shard is the registry name of the shard it was taken of.
	Shard string `json:"shard"`
	// SystemIdentifier identifies the cluster (pg_control_system()); a WAL
	// archive of another cluster cannot recover it.
	SystemIdentifier string `json:"system_identifier"`
	ServerVersion    string `json:"server_version"`
	// StartLSN and EndLSN bound the WAL the backup needs; recovery is
	// consistent from EndLSN on.
	StartLSN string `json:"start_lsn"`
	EndLSN   string `json:"end_lsn"`
	Timeline int    `json:"timeline"`
	// StartedAt and FinishedAt are when pg_basebackup started and
	// returned. A point-in-time restore to T uses only backups with
	// FinishedAt before T.
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Bytes is the size of base.tar.
	Bytes int64 `json:"bytes"`

	dir string // where it is
}

// Dir returns the backup's directory.
func (b *BaseBackupInfo) Dir() string { return b.dir }

// BaseBackupOptions configure BaseBackup.
type BaseBackupOptions struct {
	// Shard names the shard, recorded in the manifest and matched by
	// RestoreAt.
	Shard string
	// DSN connects to the shard as a superuser or a role with the
	// REPLICATION attribute, postgres://user[:password]@host:port/db; the
	// password is handed to pg_basebackup in its environment, never on
	// its command line.
	DSN string
	// Dir is the directory of the shard's base backups; the backup goes
	// into Dir/<label>.
	Dir string
	// Label names the backup; empty: "<shard>-<UTC time>-<random>".
	Label string
	// BinDir holds pg_basebackup; empty: pgserver.FindBinDir.
	BinDir string
	// Logger receives progress; nil: none.
	Logger *slog.Logger
	// Metrics records base backups; nil: none.
	Metrics *Metrics
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// BaseBackup takes a base backup of a shard with pg_basebackup (tar format,
// no WAL: recovery reads it from the WAL archive, for which pg_basebackup
// waits) into opts.Dir/<label>, and writes ManifestFile there last. The
// shard must archive its WAL (else ErrNotArchiving). On failure the
// partial directory is removed.
func BaseBackup(ctx context.Context, opts BaseBackupOptions) (info *BaseBackupInfo, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	started := time.Now().UTC()
	defer func() { opts.Metrics.baseBackup(info, err, time.Since(started)) }()
	if opts.Shard == "" || opts.DSN == "" || opts.Dir == "" {
		return nil, fmt.Errorf("%w: base backup needs a shard name, a DSN and a directory", ErrInvalid)
	}
	label := opts.Label
	if label == "" {
		var b [3]byte
		rand.Read(b[:])
		label = opts.Shard + "-" + started.Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	if !labelRE.MatchString(label) {
		return nil, fmt.Errorf("%w: label %q: want letters, digits, '_', '.', '-' (at most 100)", ErrInvalid, label)
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = pgserver.FindBinDir(); err != nil {
			return nil, fmt.Errorf("pitr: base backup: %w", err)
		}
	}
	u, err := url.Parse(opts.DSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%w: shard DSN: want postgres://user@host:port/database", ErrInvalid)
	}
	info = &BaseBackupInfo{Format: BaseFormat, Label: label, Shard: opts.Shard, StartedAt: started}
	if err := preBaseBackup(ctx, opts.DSN, info); err != nil {
		return nil, fmt.Errorf("pitr: base backup of %s: %w", opts.Shard, err)
	}
	dir := filepath.Join(opts.Dir, label)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pitr: base backup: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: base backup %s exists", ErrInvalid, dir)
		}
		return nil, fmt.Errorf("pitr: base backup: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	log = log.With("op", "basebackup", "shard", opts.Shard, "label", label)
	log.Info("basebackup: start", "dir", dir)

	// The password goes into the environment, not the command line.
	env := os.Environ()
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pg_basebackup"),
		"-d", u.String(), "-D", dir, "-F", "tar", "-X", "none", "-c", "fast", "-l", label)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pitr: pg_basebackup of %s: %w\n%s", opts.Shard, err, strings.TrimSpace(out.String()))
	}
	if err := readBackupManifest(dir, info); err != nil {
		return nil, fmt.Errorf("pitr: base backup of %s: %w", opts.Shard, err)
	}
	info.FinishedAt = time.Now().UTC()
	info.dir = dir
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "."+ManifestFile+".tmp")
	if err := writeSynced(tmp, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("pitr: base backup manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return nil, fmt.Errorf("pitr: base backup manifest: %w", err)
	}
	log.Info("basebackup: done", "bytes", info.Bytes, "start_lsn", info.StartLSN, "end_lsn", info.EndLSN,
		"elapsed", info.FinishedAt.Sub(started).Round(time.Millisecond))
	return info, nil
}

// preBaseBackup checks that the shard archives its WAL and reads what the
// manifest records about it.
func preBaseBackup(ctx context.Context, dsn string, info *BaseBackupInfo) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var mode string
	if err := conn.QueryRow(ctx, `SELECT current_setting('archive_mode'), current_setting('server_version'),
		(SELECT system_identifier::text FROM pg_control_system())`).Scan(&mode, &info.ServerVersion, &info.SystemIdentifier); err != nil {
		return err
	}
	if mode == "off" {
		return fmt.Errorf("%w: archive_mode is off; set archive_mode = on and an archive_command (see pitr.ArchiveCommand), restart, then back up", ErrNotArchiving)
	}
	return nil
}

// readBackupManifest takes the WAL range from pg_basebackup's
// backup_manifest and checks that there are no tablespace archives.
func readBackupManifest(dir string, info *BaseBackupInfo) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tar") && e.Name() != "base.tar" {
			return fmt.Errorf("%w: the shard has tablespaces (%s); only the default ones can be restored", ErrUnsupported, e.Name())
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "base.tar"))
	if err != nil {
		return err
	}
	info.Bytes = fi.Size()
	b, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		return err
	}
	var m struct {
		WALRanges []struct {
			Timeline int    `json:"Timeline"`
			Start    string `json:"Start-LSN"`
			End      string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("backup_manifest: %w", err)
	}
	if len(m.WALRanges) == 0 {
		return errors.New("backup_manifest has no WAL range")
	}
	first, last := m.WALRanges[0], m.WALRanges[len(m.WALRanges)-1]
	info.StartLSN, info.EndLSN, info.Timeline = first.Start, last.End, last.Timeline
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Sync(), f.Close())
}

// BaseBackups lists the complete base backups in dir (those with a
// ManifestFile), of one shard or (shard "") of all, oldest first.
func BaseBackups(dir, shard string) ([]*BaseBackupInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("pitr: base backups: %w", err)
	}
	var out []*BaseBackupInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), ManifestFile))
		if errors.Is(err, os.ErrNotExist) {
			continue // incomplete, or not a base backup
		}
		if err != nil {
			return nil, fmt.Errorf("pitr: base backup %s: %w", e.Name(), err)
		}
		info := &BaseBackupInfo{}
		if err := json.Unmarshal(b, info); err != nil || info.Format != BaseFormat {
			return nil, fmt.Errorf("pitr: base backup %s: unreadable %s (format %q, %v)", e.Name(), ManifestFile, info.Format, err)
		}
		info.dir = filepath.Join(dir, e.Name())
		if shard == "" || info.Shard == shard {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b *BaseBackupInfo) int { return a.FinishedAt.Compare(b.FinishedAt) })
	return out, nil
}

// latestBefore returns the latest base backup that finished before at.
func latestBefore(backups []*BaseBackupInfo, at time.Time) *BaseBackupInfo {
	var best *BaseBackupInfo
	for _, b := range backups {
		if b.FinishedAt.Before(at) {
			best = b
		}
	}
	return best
}

// ArchiveCommand returns an archive_command for a shard that copies each
// finished WAL segment into dir (an absolute path): it never overwrites a
// segment already archived, and copies to a temporary name then renames,
// so that a restore never reads a partial segment. It does not fsync: put
// the archive on storage that does, or use a dedicated tool (pgBackRest,
// wal-g) whose restore_command you then give to RestoreAt's Config.
func ArchiveCommand(dir string) (string, error) {
	c, err := pgserver.ArchiveCommand(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}
