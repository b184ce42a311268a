package pgserver

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrBinariesNotFound means that no PostgreSQL server binaries were found.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries not found")

// FindBinDir returns the directory holding the PostgreSQL server binaries
// (initdb, pg_ctl, postgres, and usually pg_basebackup, pg_dump and the
// other tools). It looks for initdb and pg_ctl on PATH (following symlinks
// to the directory they live in), then asks `pg_config --bindir`, then
// takes the highest version in /usr/lib/postgresql/*/bin. If none has the
// binaries, the error wraps ErrBinariesNotFound and says how to install
// them.
func FindBinDir() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			if real, err := filepath.EvalSymlinks(initdb); err == nil && isServerDir(filepath.Dir(real)) {
				return filepath.Dir(real), nil
			}
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); isServerDir(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, dir := range dirs {
		if isServerDir(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: looked for initdb and pg_ctl on PATH, in `pg_config --bindir` "+
		"and in /usr/lib/postgresql/*/bin; install the server (Debian: apt-get install postgresql-15)", ErrBinariesNotFound)
}

// isServerDir reports whether dir holds executable initdb, pg_ctl and postgres.
func isServerDir(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
