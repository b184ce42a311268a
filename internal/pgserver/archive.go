package pgserver

import (
	"fmt"
	"strings"
)

// ArchiveCommand returns an archive_command that copies each finished WAL
// segment into dir: it refuses to overwrite a file already archived (test
// ! -f), and copies to a temporary name first, then renames, so that a
// reader (restore_command) never sees a partial segment. It does not fsync:
// on a production shard, put the archive on storage that does, or use a
// tool such as pgBackRest or wal-g. dir must not contain a single quote.
func ArchiveCommand(dir string) (string, error) {
	if err := checkDir(dir); err != nil {
		return "", err
	}
	d := shellQuote(dir)
	return fmt.Sprintf(`test ! -f %[1]s/%%f && cp %%p %[1]s/%%f.tmp && mv %[1]s/%%f.tmp %[1]s/%%f`, d), nil
}

// RestoreCommand returns a restore_command that copies WAL segments back
// from the directory ArchiveCommand archives into.
func RestoreCommand(dir string) (string, error) {
	if err := checkDir(dir); err != nil {
		return "", err
	}
	return fmt.Sprintf(`cp %s/%%f %%p`, shellQuote(dir)), nil
}

func checkDir(dir string) error {
	if dir == "" || !strings.HasPrefix(dir, "/") || strings.ContainsAny(dir, "'%\n\x00") {
		return fmt.Errorf("WAL archive directory %q: want an absolute path without ', %% or newlines", dir)
	}
	return nil
}

// shellQuote quotes s for sh; s has no single quote.
func shellQuote(s string) string { return "'" + s + "'" }
