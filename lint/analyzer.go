package lint

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"
	"sync"

	"golang.org/x/tools/go/analysis"
)

// Name is the analyzer's name, the prefix of its flags under go vet
// (-tenantlint.allow) and the name of its diagnostics.
const Name = "tenantlint"

const doc = `report tenant-scoping bypasses of tenantry apps at build time

tenantlint reports, in packages outside the allow-list:
  - uses of the unscoped escape hatch (tenancy.Unscoped);
  - uses of functions that reach the hatch, directly or through other
    functions in any package (wrappers, tracked across packages as facts);
  - context.Background()/TODO(), or a context whose tenant was stripped,
    passed straight to a tenant-scoped generated Ent client operation or to
    tenancy.Driver: it can only fail at run time with tenancy.ErrNoTenant;
  - raw SQL on *sql.DB, pgx and pgxpool handles or Ent's plain SQL driver,
    which bypasses the tenant-scoped driver.

A finding is suppressed by "//tenantlint:ok <reason>" on its line (or alone
on the line above); a suppression without a reason is reported.`

// Analyzer is tenantlint with its flags: -allow (comma-separated regular
// expressions of package paths that may bypass scoping, default
// DefaultAllow), -hatch (comma-separated escape-hatch functions, default
// DefaultHatches) and -tests (also report in _test.go files). Under go vet
// and the tenantlint command the flags are prefixed: -tenantlint.allow.
var Analyzer = newFlagAnalyzer()

// NewAnalyzer returns tenantlint with a fixed configuration, for programs
// that embed it (the golangci-lint plugin, tests). It fails on a malformed
// allow pattern or hatch name.
func NewAnalyzer(c Config) (*analysis.Analyzer, error) {
	cc, err := c.compile()
	if err != nil {
		return nil, err
	}
	return newAnalyzer(func() (*compiled, error) { return cc, nil }), nil
}

func newAnalyzer(cfg func() (*compiled, error)) *analysis.Analyzer {
	return &analysis.Analyzer{
		Name:      Name,
		Doc:       doc,
		URL:       "https://pkg.go.dev/github.com/tenantry/tenantry/lint",
		FactTypes: []analysis.Fact{new(wrapperFact)},
		Run: func(pass *analysis.Pass) (any, error) {
			c, err := cfg()
			if err != nil {
				return nil, err
			}
			return nil, run(pass, c)
		},
	}
}

func newFlagAnalyzer() *analysis.Analyzer {
	var (
		mu   sync.Mutex
		cfg  = DefaultConfig()
		key  string
		last *compiled
	)
	a := newAnalyzer(func() (*compiled, error) {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprint(cfg.Allow, cfg.Hatches, cfg.Tests)
		if last == nil || k != key {
			c, err := cfg.compile()
			if err != nil {
				return nil, err
			}
			last, key = c, k
		}
		return last, nil
	})
	a.Flags.Var(listFlag{&cfg.Allow, func(l []string) error {
		_, err := Config{Allow: l}.compile()
		return err
	}}, "allow", "comma-separated regular expressions matched against package import paths; code in a matching package may use the escape hatch and raw SQL (default "+strings.Join(DefaultAllow, ",")+")")
	a.Flags.Var(listFlag{&cfg.Hatches, func(l []string) error {
		_, err := Config{Hatches: l}.compile()
		return err
	}}, "hatch", "comma-separated escape-hatch functions: import/path.Func or (*import/path.Type).Method; package @ent means any generated Ent client (default "+strings.Join(DefaultHatches, ",")+")")
	a.Flags.BoolVar(&cfg.Tests, "tests", false, "also report findings in _test.go files")
	return a
}

// checker is the state of one pass.
type checker struct {
	pass   *analysis.Pass
	cfg    *compiled
	ents   *entPackages
	exempt bool

	// wrappers are this package's functions and package-level variables
	// that reach a hatch.
	wrappers map[types.Object]*wrapperFact
	// quietDecl are the package's objects declared in files whose
	// findings are not reported (generated code, tests unless -tests).
	quietDecl map[types.Object]bool
	// linked are the package's functions declared without a body whose
	// //go:linkname target is a hatch.
	linked map[types.Object]*hatch
	// assigns are the assignments to local variables (see context.go).
	assigns map[*types.Var][]assignment

	suppress map[*token.File]*fileDirectives
}

func run(pass *analysis.Pass, cfg *compiled) error {
	c := &checker{
		pass:     pass,
		cfg:      cfg,
		ents:     newEntPackages(),
		suppress: map[*token.File]*fileDirectives{},
	}
	path := pass.Pkg.Path()
	c.exempt = cfg.allowed(path) || cfg.declaresHatch(strings.TrimSuffix(path, "_test"))

	// Facts first, in every package, allowed or not: a wrapper in an
	// allowed package is still a wrapper for its callers.
	c.findWrappers()

	for _, f := range pass.Files {
		if !c.reportsIn(f) {
			continue
		}
		c.directives(f) // reports suppressions without a reason
		if c.exempt {
			continue
		}
		c.checkHatchUses(f)
		c.checkContexts(f)
		c.checkRawSQL(f)
		c.checkRawHandles(f)
	}
	return nil
}

// reportsIn reports whether findings in f are reported: not in generated
// files (their fix belongs in the generator), and not in tests unless
// configured.
func (c *checker) reportsIn(f *ast.File) bool {
	if ast.IsGenerated(f) {
		return false
	}
	return c.cfg.tests || !c.isTest(f)
}

func (c *checker) isTest(f *ast.File) bool {
	return strings.HasSuffix(c.pass.Fset.File(f.FileStart).Name(), "_test.go")
}

// report emits a diagnostic unless a //tenantlint:ok directive with a reason
// covers its line.
func (c *checker) report(pos token.Pos, category, msg string, fixes ...analysis.SuggestedFix) {
	if c.suppressed(pos) {
		return
	}
	c.pass.Report(analysis.Diagnostic{
		Pos:            pos,
		Category:       category,
		Message:        msg,
		SuggestedFixes: fixes,
	})
}

// objName names a function or variable for messages: tenancy.Unscoped,
// (*admin.Service).Count, admin.Default.
func objName(obj types.Object) string {
	pkg := ""
	if obj.Pkg() != nil {
		pkg = obj.Pkg().Name() + "."
	}
	if fn, ok := obj.(*types.Func); ok {
		if sig, ok := fn.Type().(*types.Signature); ok && sig.Recv() != nil {
			rt := sig.Recv().Type()
			star := ""
			if p, ok := types.Unalias(rt).(*types.Pointer); ok {
				star, rt = "*", p.Elem()
			}
			if n := namedOf(rt); n != nil {
				return "(" + star + pkg + n.Obj().Name() + ")." + fn.Name()
			}
			return fn.Name()
		}
	}
	return pkg + obj.Name()
}
