package lint

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/types/typeutil"
)

// assignment is one way a local variable gets a value.
type assignment struct {
	rhs   ast.Expr // nil: unknown (parameter, range variable, address taken, op-assign)
	index int      // result index when rhs is a call with several results
	tuple bool
	zero  bool // declared without a value
}

// collectAssignments records every assignment to local variables of the
// package, so that a variable assigned exactly once can be followed to its
// value.
func (c *checker) collectAssignments() {
	if c.assigns != nil {
		return
	}
	info := c.pass.TypesInfo
	c.assigns = map[*types.Var][]assignment{}
	add := func(id *ast.Ident, a assignment) {
		if id == nil || id.Name == "_" {
			return
		}
		obj := info.Defs[id]
		if obj == nil {
			obj = info.Uses[id]
		}
		if v, ok := obj.(*types.Var); ok && !v.IsField() && (v.Pkg() == nil || v.Parent() != v.Pkg().Scope()) {
			c.assigns[v] = append(c.assigns[v], a)
		}
	}
	unknown := assignment{}
	for _, f := range c.pass.Files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, l := range n.Lhs {
					id, ok := ast.Unparen(l).(*ast.Ident)
					if !ok {
						continue
					}
					switch {
					case n.Tok != token.ASSIGN && n.Tok != token.DEFINE:
						add(id, unknown)
					case len(n.Lhs) == len(n.Rhs):
						add(id, assignment{rhs: n.Rhs[i]})
					case len(n.Rhs) == 1:
						add(id, assignment{rhs: n.Rhs[0], index: i, tuple: true})
					default:
						add(id, unknown)
					}
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					switch {
					case len(n.Values) == 0:
						add(id, assignment{zero: true})
					case len(n.Values) == len(n.Names):
						add(id, assignment{rhs: n.Values[i]})
					case len(n.Values) == 1:
						add(id, assignment{rhs: n.Values[0], index: i, tuple: true})
					}
				}
			case *ast.RangeStmt:
				for _, e := range []ast.Expr{n.Key, n.Value} {
					if id, ok := e.(*ast.Ident); ok {
						add(id, unknown)
					}
				}
			case *ast.IncDecStmt:
				if id, ok := ast.Unparen(n.X).(*ast.Ident); ok {
					add(id, unknown)
				}
			case *ast.UnaryExpr:
				if id, ok := ast.Unparen(n.X).(*ast.Ident); ok && n.Op == token.AND {
					add(id, unknown)
				}
			case *ast.FuncType:
				for _, fl := range []*ast.FieldList{n.Params, n.Results} {
					if fl == nil {
						continue
					}
					for _, fld := range fl.List {
						for _, id := range fld.Names {
							add(id, unknown)
						}
					}
				}
			}
			return true
		})
	}
}

// single returns the only assignment of v, if it has exactly one that is
// known.
func (c *checker) single(v *types.Var) (assignment, bool) {
	c.collectAssignments()
	as := c.assigns[v]
	if len(as) != 1 || as[0].rhs == nil && !as[0].zero {
		return assignment{}, false
	}
	return as[0], true
}

// ctxKind is what a context expression is known to carry.
type ctxKind int

const (
	ctxUnknown  ctxKind = iota
	ctxEmpty            // no tenant: context.Background(), TODO(), a zero tenant id
	ctxTenant           // tenancy.WithTenant(ctx, id)
	ctxUnscoped         // a hatch
)

type ctxOrigin struct {
	kind ctxKind
	what string    // for ctxEmpty: "context.Background()"
	pos  token.Pos // where the tenant-less context was made
}

// contextDerivers return a context carrying the values of their first
// argument.
var contextDerivers = map[string]bool{
	"WithCancel": true, "WithCancelCause": true, "WithDeadline": true, "WithDeadlineCause": true,
	"WithTimeout": true, "WithTimeoutCause": true, "WithValue": true, "WithoutCancel": true,
}

// origin follows a context expression through single-assignment local
// variables and the context package's derivations to where it was made.
func (c *checker) origin(e ast.Expr, depth int) ctxOrigin {
	if depth > 16 {
		return ctxOrigin{}
	}
	info := c.pass.TypesInfo
	switch e := ast.Unparen(e).(type) {
	case *ast.CallExpr:
		return c.callOrigin(e, 0, depth)
	case *ast.Ident:
		v, ok := info.Uses[e].(*types.Var)
		if !ok {
			return ctxOrigin{}
		}
		a, ok := c.single(v)
		if !ok || a.zero {
			return ctxOrigin{}
		}
		if a.tuple {
			call, ok := ast.Unparen(a.rhs).(*ast.CallExpr)
			if !ok {
				return ctxOrigin{}
			}
			return c.callOrigin(call, a.index, depth+1)
		}
		return c.origin(a.rhs, depth+1)
	}
	return ctxOrigin{}
}

// callOrigin is the origin of result index of call.
func (c *checker) callOrigin(call *ast.CallExpr, index, depth int) ctxOrigin {
	fn := typeutil.StaticCallee(c.pass.TypesInfo, call)
	if fn == nil || fn.Pkg() == nil {
		return ctxOrigin{}
	}
	if index == 0 && c.cfg.hatchOf(fn, c.ents) != nil {
		return ctxOrigin{kind: ctxUnscoped}
	}
	if index != 0 {
		return ctxOrigin{}
	}
	switch fn.Pkg().Path() {
	case "context":
		switch name := fn.Name(); {
		case name == "Background" || name == "TODO":
			return ctxOrigin{kind: ctxEmpty, what: "context." + name + "()", pos: call.Pos()}
		case contextDerivers[name] && len(call.Args) > 0:
			return c.origin(call.Args[0], depth+1)
		}
	case TenancyPath:
		if fn.Name() == "WithTenant" && len(call.Args) == 2 {
			if c.zeroID(call.Args[1], depth+1) {
				return ctxOrigin{kind: ctxEmpty, what: "tenancy.WithTenant with the zero tenancy.ID", pos: call.Pos()}
			}
			return ctxOrigin{kind: ctxTenant}
		}
	}
	return ctxOrigin{}
}

// zeroID reports whether e is certainly the zero tenancy.ID: tenancy.ID{},
// tenancy.ID(uuid.Nil), a variable declared without a value, or a local
// variable assigned only one of those.
func (c *checker) zeroID(e ast.Expr, depth int) bool {
	if depth > 16 {
		return false
	}
	info := c.pass.TypesInfo
	switch e := ast.Unparen(e).(type) {
	case *ast.CompositeLit:
		return len(e.Elts) == 0 && isTenancyID(info.TypeOf(e))
	case *ast.CallExpr:
		// A conversion tenancy.ID(uuid.Nil) or tenancy.ID(uuid.UUID{}).
		if tv, ok := info.Types[e.Fun]; ok && tv.IsType() && isTenancyID(tv.Type) && len(e.Args) == 1 {
			switch a := ast.Unparen(e.Args[0]).(type) {
			case *ast.CompositeLit:
				return len(a.Elts) == 0
			case *ast.SelectorExpr:
				v, ok := info.Uses[a.Sel].(*types.Var)
				return ok && v.Pkg() != nil && v.Pkg().Path() == "github.com/google/uuid" && v.Name() == "Nil"
			}
		}
	case *ast.Ident:
		v, ok := info.Uses[e].(*types.Var)
		if !ok || !isTenancyID(v.Type()) {
			return false
		}
		a, ok := c.single(v)
		if !ok || a.tuple {
			return false
		}
		return a.zero || c.zeroID(a.rhs, depth+1)
	}
	return false
}

// scopedOp reports whether fn runs statements that need a tenant: a method
// taking a context first on a builder of a tenant-scoped generated Ent
// client, or on tenancy.Driver / tenancy.Tx.
func (c *checker) scopedOp(fn *types.Func) bool {
	fn = fn.Origin()
	sig, ok := fn.Type().(*types.Signature)
	if !ok || sig.Recv() == nil || sig.Params().Len() == 0 || !isContext(sig.Params().At(0).Type()) {
		return false
	}
	n := namedOf(sig.Recv().Type())
	if n == nil || n.Obj().Pkg() == nil {
		return false
	}
	pkg, name := n.Obj().Pkg(), n.Obj().Name()
	if pkg.Path() == TenancyPath {
		return name == "Driver" || name == "Tx"
	}
	return isBuilderName(name) && c.ents.tenantScoped(pkg)
}

func isContext(t types.Type) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "context" && n.Obj().Name() == "Context"
}

// operation returns the method a call invokes and the index of its context
// argument: a method call or a method value called through a local variable
// (ctx is argument 0), or a method expression (argument 1).
func (c *checker) operation(call *ast.CallExpr) (*types.Func, int) {
	info := c.pass.TypesInfo
	switch fun := ast.Unparen(call.Fun).(type) {
	case *ast.SelectorExpr:
		sel := info.Selections[fun]
		if sel == nil {
			return nil, 0
		}
		fn, _ := sel.Obj().(*types.Func)
		switch sel.Kind() {
		case types.MethodVal:
			return fn, 0
		case types.MethodExpr:
			return fn, 1
		}
	case *ast.Ident:
		v, ok := info.Uses[fun].(*types.Var)
		if !ok {
			return nil, 0
		}
		a, ok := c.single(v)
		if !ok || a.tuple || a.zero {
			return nil, 0
		}
		if se, ok := ast.Unparen(a.rhs).(*ast.SelectorExpr); ok {
			if sel := info.Selections[se]; sel != nil && sel.Kind() == types.MethodVal {
				fn, _ := sel.Obj().(*types.Func)
				return fn, 0
			}
		}
	}
	return nil, 0
}

// checkContexts reports tenant-less contexts passed straight into scoped
// operations (rule 3).
func (c *checker) checkContexts(f *ast.File) {
	var funcs []*ast.FuncType // enclosing functions, innermost last
	var walk func(n ast.Node) bool
	walk = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Body == nil {
				return false
			}
			funcs = append(funcs, n.Type)
			ast.Inspect(n.Body, walk)
			funcs = funcs[:len(funcs)-1]
			return false
		case *ast.FuncLit:
			funcs = append(funcs, n.Type)
			ast.Inspect(n.Body, walk)
			funcs = funcs[:len(funcs)-1]
			return false
		case *ast.CallExpr:
			fn, i := c.operation(n)
			if fn == nil || i >= len(n.Args) || !c.scopedOp(fn) {
				return true
			}
			arg := n.Args[i]
			o := c.origin(arg, 0)
			if o.kind != ctxEmpty {
				return true
			}
			what := o.what
			if _, direct := ast.Unparen(arg).(*ast.CallExpr); !direct {
				what = fmt.Sprintf("%s (made by %s on line %d)", types.ExprString(arg), o.what, c.pass.Fset.Position(o.pos).Line)
			}
			fixes := c.ctxParamFix(arg, funcs)
			c.report(arg.Pos(), "context", fmt.Sprintf(
				"%s carries no tenant but is passed to %s, a tenant-scoped operation: it can only fail at run time with tenancy.ErrNoTenant; "+
					"pass the caller's context scoped with tenancy.WithTenant(ctx, id)",
				what, objName(fn.Origin())), fixes...)
		}
		return true
	}
	ast.Inspect(f, walk)
}

// ctxParamFix suggests replacing a direct context.Background()/TODO() with
// the context parameter of the nearest enclosing function that has one (a
// closure sees its outer function's), when it has exactly one and it is
// visible at the call.
func (c *checker) ctxParamFix(arg ast.Expr, funcs []*ast.FuncType) []analysis.SuggestedFix {
	call, ok := ast.Unparen(arg).(*ast.CallExpr)
	if !ok {
		return nil
	}
	fn := typeutil.StaticCallee(c.pass.TypesInfo, call)
	if fn == nil || fn.Pkg() == nil || fn.Pkg().Path() != "context" {
		return nil
	}
	var param *types.Var
	for i := len(funcs) - 1; i >= 0 && param == nil; i-- {
		for _, fld := range funcs[i].Params.List {
			if !isContext(c.pass.TypesInfo.TypeOf(fld.Type)) {
				continue
			}
			if len(fld.Names) != 1 || param != nil {
				return nil // unnamed, or two context parameters: not obvious
			}
			param, _ = c.pass.TypesInfo.Defs[fld.Names[0]].(*types.Var)
		}
	}
	if param == nil || param.Name() == "_" {
		return nil
	}
	if scope := c.pass.Pkg.Scope().Innermost(arg.Pos()); scope == nil {
		return nil
	} else if _, obj := scope.LookupParent(param.Name(), arg.Pos()); obj != param {
		return nil // shadowed
	}
	return []analysis.SuggestedFix{{
		Message:   "Use the function's context parameter " + param.Name(),
		TextEdits: []analysis.TextEdit{{Pos: arg.Pos(), End: arg.End(), NewText: []byte(param.Name())}},
	}}
}
