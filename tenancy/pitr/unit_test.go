package pitr

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLatestBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bases := []*BaseBackupInfo{
		{Label: "a", FinishedAt: t0},
		{Label: "b", FinishedAt: t0.Add(time.Hour)},
		{Label: "c", FinishedAt: t0.Add(2 * time.Hour)},
	}
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(-time.Second), ""},
		{t0, ""}, // finished exactly at T: not before it
		{t0.Add(time.Second), "a"},
		{t0.Add(90 * time.Minute), "b"},
		{t0.Add(24 * time.Hour), "c"},
	} {
		got := ""
		if b := latestBefore(bases, tt.at); b != nil {
			got = b.Label
		}
		if got != tt.want {
			t.Errorf("latestBefore(%s) = %q, want %q", tt.at, got, tt.want)
		}
	}
}

func TestRecoveryTime(t *testing.T) {
	for _, tt := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 25, 21, 3, 37, 574994000, time.UTC), "2026-11-25 21:03:37.574994+00"},
		{time.Date(2026, 11, 25, 22, 0, 0, 0, time.FixedZone("CET", 3600)), "2026-11-25 21:00:00+00"},
		{time.Date(2026, 11, 25, 21, 0, 0, 1500, time.UTC), "2026-11-25 21:00:00.000001+00"},
	} {
		if got := recoveryTime(tt.in); got != tt.want {
			t.Errorf("recoveryTime(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestArchiveCommand(t *testing.T) {
	got, err := ArchiveCommand("/var/lib/wal archive")
	if err != nil {
		t.Fatal(err)
	}
	if want := `test ! -f '/var/lib/wal archive'/%f && cp %p '/var/lib/wal archive'/%f.tmp && mv '/var/lib/wal archive'/%f.tmp '/var/lib/wal archive'/%f`; got != want {
		t.Errorf("ArchiveCommand = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "relative/dir", "/it's", "/a%b", "/a\nb"} {
		if _, err := ArchiveCommand(bad); err == nil {
			t.Errorf("ArchiveCommand(%q): no error", bad)
		}
	}
}

func TestRecoveredTo(t *testing.T) {
	dir := t.TempDir()
	s := &scratch{logPath: filepath.Join(dir, "postgres.log")}
	if !s.recoveredTo().IsZero() {
		t.Error("no log: want zero")
	}
	log := `2026-11-25 21:03:40.101 UTC [1] LOG:  recovery stopping before commit of transaction 745, time 2026-11-25 21:03:37.601 UTC
2026-11-25 21:03:40.102 UTC [1] LOG:  pausing at the end of recovery
2026-11-25 21:03:40.103 UTC [1] LOG:  last completed transaction was at log time 2026-11-25 21:03:37.550537+00
`
	if err := os.WriteFile(s.logPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 25, 21, 3, 37, 550537000, time.UTC)
	if got := s.recoveredTo(); !got.Equal(want) {
		t.Errorf("recoveredTo = %s, want %s", got, want)
	}
}
