package lint_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestGoVet builds the tenantlint command and runs the real go vet with it
// on testdata/vetmodule, a module that imports this repository (through a
// replace directive) and breaks every rule outside the allow-list. It checks
// the exit status and messages under go vet (the unitchecker protocol, with
// a flag passed through go vet), and standalone on the analysistest stubs.
func TestGoVet(t *testing.T) {
	t.Parallel() // mostly waiting on go build and go vet
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "tenantlint")
	run(t, root, nil, "go", "build", "-o", bin, "./lint/cmd/tenantlint")

	mod := filepath.Join(tmp, "fixture")
	copyDir(t, filepath.Join("testdata", "vetmodule"), mod)
	writeFile(t, filepath.Join(mod, "go.mod"), "module example.com/fixture\n\ngo 1.26.0\n\n"+
		"require github.com/tenantry/tenantry v0.0.0-00010101000000-000000000000\n\n"+
		"replace github.com/tenantry/tenantry => "+root+"\n")
	// This repository's go.sum covers its dependencies; -mod=mod fills in
	// the fixture's requirements from the module cache, never the network.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mod, "go.sum"), string(sum))
	env := []string{
		"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"),
		"GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local",
	}

	want := []*regexp.Regexp{
		regexp.MustCompile(`handlers[/\\]handlers\.go:22:17: tenancy\.Unscoped used in package example\.com/fixture/handlers, which is not allowed to bypass tenant scoping`),
		regexp.MustCompile(`handlers[/\\]handlers\.go:24:16: admin\.CountOrders reaches the escape hatch tenancy\.Unscoped \(admin\.CountOrders → tenancy\.Unscoped\)`),
		regexp.MustCompile(`handlers[/\\]handlers\.go:25:41: context\.Background\(\) carries no tenant but is passed to \(\*ent\.CustomerQuery\)\.Count`),
		regexp.MustCompile(`handlers[/\\]handlers\.go:26:16: raw SQL through \(\*pgxpool\.Pool\)\.Exec bypasses the tenant-scoped driver`),
	}
	check := func(what string, out string) {
		t.Helper()
		for _, re := range want {
			if !re.MatchString(out) {
				t.Errorf("%s: no line matching %s in:\n%s", what, re, out)
			}
		}
		if n := strings.Count(out, ".go:"); n != len(want) {
			t.Errorf("%s: %d findings, want %d (internal/admin and the suppressed line are allowed):\n%s", what, n, len(want), out)
		}
	}

	t0 := time.Now()
	out, err := runErr(mod, env, "go", "vet", "-vettool="+bin, "./...")
	if err == nil {
		t.Fatalf("go vet -vettool: exit 0, want non-zero; output:\n%s", out)
	}
	check("go vet -vettool", out)
	t.Logf("go vet -vettool: %s", time.Since(t0).Round(time.Millisecond))

	// Flags pass through go vet: allowing the package silences it.
	out, err = runErr(mod, env, "go", "vet", "-vettool="+bin,
		"-tenantlint.allow=(^|/)internal/admin(/|$),^example\\.com/fixture/handlers$", "./...")
	if err != nil {
		t.Errorf("go vet -vettool -tenantlint.allow=...handlers: %v\n%s", err, out)
	}

	// Standalone, the command loads and type-checks from source; on the
	// stubs of the analysistest suites (GOPATH mode) that takes a second,
	// where the real dependencies of the fixture would take ten.
	gopath, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	out, err = runErr(t.TempDir(), []string{"GOPATH=" + gopath, "GO111MODULE=off", "GOFLAGS=", "GOWORK=off"},
		bin, "example.com/lib/deeper", "example.com/app/internal/admin")
	if err == nil {
		t.Fatalf("tenantlint (standalone): exit 0, want non-zero; output:\n%s", out)
	}
	if !regexp.MustCompile(`deeper\.go:\d+:\d+: wrap\.Twice reaches the escape hatch tenancy\.Unscoped`).MatchString(out) ||
		strings.Count(out, ".go:") != 1 {
		t.Errorf("tenantlint (standalone): want one wrapper finding in deeper.go, got:\n%s", out)
	}
	t.Logf("tenantlint (standalone): %s", time.Since(t0).Round(time.Millisecond))
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
