package pgserver

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCommands(t *testing.T) {
	for _, tt := range []struct {
		fn   func(string) (string, error)
		dir  string
		want string
	}{
		{ArchiveCommand, "/srv/wal", `test ! -f '/srv/wal'/%f && cp %p '/srv/wal'/%f.tmp && mv '/srv/wal'/%f.tmp '/srv/wal'/%f`},
		{RestoreCommand, "/srv/wal dir", `cp '/srv/wal dir'/%f %p`},
	} {
		got, err := tt.fn(tt.dir)
		if err != nil || got != tt.want {
			t.Errorf("(%q) = %q, %v; want %q", tt.dir, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "wal", "/a'b", "/a%f"} {
		if _, err := RestoreCommand(bad); err == nil {
			t.Errorf("RestoreCommand(%q): no error", bad)
		}
	}
}

// FindBinDir fails the test where PostgreSQL is missing: the project's
// tests need it (scripts/install-deps.sh installs it).
func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "pg_ctl", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRunAs(t *testing.T) {
	cred, err := RunAs()
	if err != nil {
		t.Fatal(err)
	}
	if (os.Geteuid() == 0) != (cred != nil) {
		t.Errorf("euid %d, credential %+v: want one exactly when root", os.Geteuid(), cred)
	}
}
