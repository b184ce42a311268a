package pgtest

import (
	"fmt"

	"github.com/tenantry/tenantry/internal/pgserver"
)

// ErrBinariesNotFound means that no PostgreSQL server binaries were found.
var ErrBinariesNotFound = pgserver.ErrBinariesNotFound

// FindBinDir returns the directory holding the PostgreSQL server binaries
// (initdb, pg_ctl, postgres, and usually pg_dump and the other tools). It
// looks for initdb and pg_ctl on PATH (following symlinks to the directory
// they live in), then asks `pg_config --bindir`, then takes the highest
// version in /usr/lib/postgresql/*/bin. If none has the binaries, the error
// wraps ErrBinariesNotFound and says how to install them.
func FindBinDir() (string, error) {
	dir, err := pgserver.FindBinDir()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w, or set %s to comma-separated superuser URLs of running servers", err, EnvDSNs)
	}
	return dir, nil
}
