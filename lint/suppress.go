package lint

import (
	"go/ast"
	"go/token"
	"strings"

	"golang.org/x/tools/go/analysis"
)

// Directive is the suppression comment: "//tenantlint:ok <reason>" on the
// line of a finding, or alone on the line above it.
const Directive = "//tenantlint:ok"

// fileDirectives are the suppressions of one file, by line.
type fileDirectives struct {
	lines map[int]bool // lines covered by a directive with a reason
}

// directives parses the suppressions of f and reports those without a
// reason.
func (c *checker) directives(f *ast.File) *fileDirectives {
	tf := c.pass.Fset.File(f.FileStart)
	if d := c.suppress[tf]; d != nil {
		return d
	}
	d := &fileDirectives{lines: map[int]bool{}}
	c.suppress[tf] = d
	var src []byte
	for _, cg := range f.Comments {
		for _, cm := range cg.List {
			rest, ok := strings.CutPrefix(cm.Text, Directive)
			if !ok || rest != "" && rest[0] != ' ' && rest[0] != '\t' {
				continue
			}
			if strings.TrimSpace(rest) == "" {
				c.pass.Report(analysisDiag(cm.Pos(), "suppress",
					"//tenantlint:ok needs a reason: say why this line may bypass tenant scoping, e.g. //tenantlint:ok nightly billing job reads all tenants; without one it suppresses nothing"))
				continue
			}
			line := tf.Line(cm.Pos())
			d.lines[line] = true
			// Alone on its line: it covers the next line too.
			if src == nil {
				src, _ = c.pass.ReadFile(tf.Name())
			}
			start := tf.Offset(tf.LineStart(line))
			if off := tf.Offset(cm.Pos()); src != nil && off <= len(src) && strings.TrimSpace(string(src[start:off])) == "" {
				d.lines[line+1] = true
			}
		}
	}
	return d
}

func (c *checker) suppressed(pos token.Pos) bool {
	tf := c.pass.Fset.File(pos)
	if tf == nil {
		return false
	}
	d := c.suppress[tf]
	return d != nil && d.lines[tf.Line(pos)]
}

func analysisDiag(pos token.Pos, category, msg string) analysis.Diagnostic {
	return analysis.Diagnostic{Pos: pos, Category: category, Message: msg}
}
