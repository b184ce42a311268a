package lint

import (
	"fmt"
	"go/types"
	"regexp"
	"strings"
)

// TenancyPath is the import path of the tenancy package: its WithTenant
// scopes a context, its zero ID strips the tenant, and its Driver and Tx are
// checked like generated client operations.
const TenancyPath = "github.com/tenantry/tenantry/tenancy"

// EntGenerated is the package path that a hatch name may use to mean "any
// generated Ent client package", e.g. "(*@ent.Client).Unscoped".
const EntGenerated = "@ent"

// DefaultAllow are the package path patterns whose code may use the escape
// hatch and raw SQL: any package under a "migrate" or "internal/admin" path
// segment (".../migrate", ".../migrate/fleet", ".../internal/admin/reports").
var DefaultAllow = []string{
	`(^|/)migrate(/|$)`,
	`(^|/)internal/admin(/|$)`,
}

// DefaultHatches are the escape-hatch functions.
var DefaultHatches = []string{
	TenancyPath + ".Unscoped",
}

// Config configures an analyzer made by NewAnalyzer. The zero Config is not
// the default: start from DefaultConfig.
type Config struct {
	// Allow holds regular expressions (RE2 syntax, unanchored) matched
	// against the import path of the package being checked; the "_test"
	// suffix of an external test package is removed first. Code in a
	// matching package is exempt from every rule. The packages that declare
	// a hatch function are always exempt.
	Allow []string
	// Hatches names the escape-hatch functions, each as
	// "import/path.Func", "(*import/path.Type).Method" or
	// "(import/path.Type).Method". The package path "@ent" stands for any
	// generated Ent client package.
	Hatches []string
	// Tests reports findings in _test.go files too. Off by default: tests
	// legitimately check that a context without a tenant fails, and set up
	// fixtures with raw SQL.
	Tests bool
}

// DefaultConfig returns the configuration of Analyzer before any flag is set.
func DefaultConfig() Config {
	return Config{
		Allow:   append([]string(nil), DefaultAllow...),
		Hatches: append([]string(nil), DefaultHatches...),
	}
}

// compiled is a validated Config.
type compiled struct {
	allow   []*regexp.Regexp
	hatches []hatch
	tests   bool
}

func (c Config) compile() (*compiled, error) {
	out := &compiled{tests: c.Tests}
	for _, s := range c.Allow {
		re, err := compileAllow(s)
		if err != nil {
			return nil, err
		}
		if re != nil {
			out.allow = append(out.allow, re)
		}
	}
	for _, s := range c.Hatches {
		h, err := parseHatch(s)
		if err != nil {
			return nil, err
		}
		if h != nil {
			out.hatches = append(out.hatches, *h)
		}
	}
	return out, nil
}

func compileAllow(s string) (*regexp.Regexp, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("tenantlint: allow pattern %q: %v", s, err)
	}
	return re, nil
}

// allowed reports whether code in the package with this import path is
// exempt.
func (c *compiled) allowed(path string) bool {
	path = strings.TrimSuffix(path, "_test")
	for _, re := range c.allow {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

// hatch is one escape-hatch function.
type hatch struct {
	pkg  string // import path, or EntGenerated
	recv string // receiver type name; "" for a function
	name string
}

func (h hatch) String() string {
	if h.recv == "" {
		return h.pkg + "." + h.name
	}
	return "(*" + h.pkg + "." + h.recv + ")." + h.name
}

// parseHatch parses "path.Func", "(*path.Type).Method" or "(path.Type).Method".
func parseHatch(s string) (*hatch, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("tenantlint: hatch %q: want import/path.Func, (*import/path.Type).Method or (import/path.Type).Method", s)
	var h hatch
	if strings.HasPrefix(s, "(") {
		end := strings.Index(s, ").")
		if end < 0 {
			return nil, bad
		}
		recv := strings.TrimPrefix(s[1:end], "*")
		h.name = s[end+2:]
		dot := strings.LastIndex(recv, ".")
		if dot <= 0 {
			return nil, bad
		}
		h.pkg, h.recv = recv[:dot], recv[dot+1:]
		if !isIdent(h.recv) {
			return nil, bad
		}
	} else {
		dot := strings.LastIndex(s, ".")
		if dot <= 0 {
			return nil, bad
		}
		h.pkg, h.name = s[:dot], s[dot+1:]
	}
	if !isIdent(h.name) || strings.ContainsAny(h.pkg, " ()*") {
		return nil, bad
	}
	return &h, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}

// hatchOf returns the hatch that fn is, if any.
func (c *compiled) hatchOf(fn *types.Func, ents *entPackages) *hatch {
	if fn == nil || fn.Pkg() == nil {
		return nil
	}
	fn = fn.Origin()
	recv := ""
	if sig, ok := fn.Type().(*types.Signature); ok && sig.Recv() != nil {
		if n := namedOf(sig.Recv().Type()); n != nil {
			recv = n.Obj().Name()
		}
	}
	for i := range c.hatches {
		h := &c.hatches[i]
		if h.name != fn.Name() || h.recv != recv {
			continue
		}
		if h.pkg == fn.Pkg().Path() || h.pkg == EntGenerated && ents.generated(fn.Pkg()) {
			return h
		}
	}
	return nil
}

// linkedHatch returns the hatch that a //go:linkname target names, if any:
// "import/path.Func", "import/path.(*Type).Method" or
// "import/path.Type.Method", as the linker spells them.
func (c *compiled) linkedHatch(target string) *hatch {
	for i := range c.hatches {
		h := &c.hatches[i]
		if h.pkg == EntGenerated || !strings.HasPrefix(target, h.pkg+".") {
			continue
		}
		sym := target[len(h.pkg)+1:]
		if h.recv == "" && sym == h.name ||
			h.recv != "" && (sym == "(*"+h.recv+")."+h.name || sym == h.recv+"."+h.name) {
			return h
		}
	}
	return nil
}

// declaresHatch reports whether pkg declares one of the hatch functions (by
// explicit path): such a package implements scoping and is exempt.
func (c *compiled) declaresHatch(path string) bool {
	for _, h := range c.hatches {
		if h.pkg == path {
			return true
		}
	}
	return false
}

// splitList splits a flag value at commas that are not inside (), [] or {},
// so that a regular expression like a{1,2} survives.
func splitList(s string) []string {
	var (
		out   []string
		depth int
		start int
	)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	out = append(out, s[start:])
	var res []string
	for _, p := range out {
		if p = strings.TrimSpace(p); p != "" {
			res = append(res, p)
		}
	}
	return res
}

// listFlag is a flag.Value holding a comma-separated list; check validates
// the whole list when it is set.
type listFlag struct {
	list  *[]string
	check func([]string) error
}

func (f listFlag) String() string {
	if f.list == nil {
		return ""
	}
	return strings.Join(*f.list, ",")
}

func (f listFlag) Set(s string) error {
	l := splitList(s)
	if err := f.check(l); err != nil {
		return err
	}
	*f.list = l
	return nil
}
