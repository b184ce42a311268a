package lint_test

import (
	"strings"
	"testing"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/tenantry/tenantry/lint"
)

// The suites run on GOPATH-style packages under testdata/src: stubs of
// tenancy, Ent, pgx and a generated client at their real import paths, and
// example packages with // want comments for diagnostics and facts.

func newAnalyzer(t *testing.T, c lint.Config) *analysis.Analyzer {
	t.Helper()
	a, err := lint.NewAnalyzer(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDefaults covers every rule with the default configuration: the hatch
// (direct, function value, generated client method), wrappers across
// packages (facts, generics, method values and expressions, package-level
// variables), tenant-less contexts, raw SQL, suppressions, and what must
// not be reported: allowed packages, the tenancy package itself, scoped
// use, other clients, test files.
func TestDefaults(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), lint.Analyzer,
		"example.com/app/api",
		"example.com/app/internal/admin",
		"example.com/app/migrate",
		"example.com/lib/wrap",
		"example.com/lib/deeper",
		"github.com/tenantry/tenantry/tenancy",
	)
}

// TestAssignedAndLinked: a package variable that holds data computed
// unscoped is no wrapper; a go:linkname alias of the hatch is found whatever
// file holds the directive, and reported at its callers when it is declared
// in a generated file.
func TestAssignedAndLinked(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), lint.Analyzer,
		"example.com/stats/internal/admin", "example.com/stats/api",
		"example.com/linkfile", "example.com/linkgen")
}

// TestTests reports in test files, internal and external, when configured.
func TestTests(t *testing.T) {
	c := lint.DefaultConfig()
	c.Tests = true
	analysistest.Run(t, analysistest.TestData(), newAnalyzer(t, c), "example.com/testsflag")
}

// TestCustom replaces the allow-list and adds hatches: a function of
// another package and the generated client's method, by the @ent path.
func TestCustom(t *testing.T) {
	c := lint.Config{
		Allow:   []string{`^example\.com/custom/ops$`},
		Hatches: append(lint.DefaultConfig().Hatches, "example.com/custom/legacy.SkipTenant", "(*@ent.Client).Unscoped"),
	}
	analysistest.Run(t, analysistest.TestData(), newAnalyzer(t, c),
		"example.com/custom/ops",
		"example.com/custom/migrate",
		"example.com/custom/handler",
		"example.com/custom/legacy",
	)
}

// TestSuggestedFixes: context.Background() becomes the function's context
// parameter where that is unambiguous (fixes.go.golden).
func TestSuggestedFixes(t *testing.T) {
	analysistest.RunWithSuggestedFixes(t, analysistest.TestData(), lint.Analyzer, "example.com/app/fixes")
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []lint.Config{
		{Allow: []string{"(unclosed"}},
		{Hatches: []string{"Unscoped"}},
		{Hatches: []string{"(*tenancy.ID.Unscoped"}},
		{Hatches: []string{"(*.ID).Unscoped"}},
		{Hatches: []string{"example.com/x.not-an-ident"}},
	} {
		if _, err := lint.NewAnalyzer(c); err == nil {
			t.Errorf("NewAnalyzer(%+v): no error", c)
		}
	}
}

func TestFlags(t *testing.T) {
	fs := lint.Analyzer.Flags
	for _, name := range []string{"allow", "hatch", "tests"} {
		if fs.Lookup(name) == nil {
			t.Fatalf("flag -%s missing", name)
		}
	}
	if got, want := fs.Lookup("allow").Value.String(), strings.Join(lint.DefaultAllow, ","); got != want {
		t.Errorf("-allow default = %q, want %q", got, want)
	}
	if err := fs.Set("allow", "(bad"); err == nil {
		t.Error("-allow=(bad: no error")
	}
	if err := fs.Set("hatch", "nodot"); err == nil {
		t.Error("-hatch=nodot: no error")
	}
	// A list whose regular expressions contain commas in braces.
	old := fs.Lookup("allow").Value.String()
	defer fs.Set("allow", old)
	if err := fs.Set("allow", `^a{1,2}$, (^|/)b(/|$)`); err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("allow").Value.String(); got != `^a{1,2}$,(^|/)b(/|$)` {
		t.Errorf("-allow parsed as %q", got)
	}
}
