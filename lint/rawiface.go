package lint

import (
	"fmt"
	"go/ast"
	"go/types"
)

// checkRawHandles reports raw database handles that become a value of an
// interface type with exec or query methods (rule 4): passed as an
// argument, assigned, returned or put in a composite literal. Every
// statement later run through that interface (sqlc's DBTX, a repository's
// own Querier) bypasses the tenant-scoped driver, and checkRawSQL, which
// sees only the interface, cannot tell. Ent's dialect interfaces are not
// reported: the tenancy driver implements them too.
func (c *checker) checkRawHandles(f *ast.File) {
	info := c.pass.TypesInfo
	check := func(e ast.Expr, to types.Type) {
		if e == nil || to == nil {
			return
		}
		tv, ok := info.Types[e]
		if !ok || !tv.IsValue() {
			return
		}
		if recv, iface, method := rawInto(tv.Type, to); method != "" {
			c.report(e.Pos(), "rawsql", fmt.Sprintf(
				"raw database handle %s used as %s: statements run through its %s bypass the tenant-scoped driver (no tenant filter, search_path or app.current_tenant_id), "+
					"so nothing limits them to one tenant's rows; run them through the generated client's ExecContext/QueryContext with a tenancy.WithTenant context, "+
					"or move this code to an allowed package (-tenantlint.allow)",
				recv, iface, method))
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			tv, ok := info.Types[n.Fun]
			if !ok || tv.IsType() {
				return true // a conversion: the converted value is checked where it goes
			}
			sig, ok := types.Unalias(tv.Type).Underlying().(*types.Signature)
			if !ok {
				return true
			}
			for i, arg := range n.Args {
				check(arg, paramType(sig, i, n.Ellipsis.IsValid()))
			}
		case *ast.AssignStmt:
			if len(n.Lhs) != len(n.Rhs) {
				return true
			}
			for i, lhs := range n.Lhs {
				if tv, ok := info.Types[lhs]; ok {
					check(n.Rhs[i], tv.Type)
				}
			}
		case *ast.ValueSpec:
			if n.Type == nil || len(n.Values) != len(n.Names) {
				return true
			}
			for _, v := range n.Values {
				check(v, info.TypeOf(n.Type))
			}
		case *ast.CompositeLit:
			st, ok := types.Unalias(info.TypeOf(n)).Underlying().(*types.Struct)
			if !ok {
				return true
			}
			for i, el := range n.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					if id, ok := kv.Key.(*ast.Ident); ok {
						if fld, ok := info.Uses[id].(*types.Var); ok {
							check(kv.Value, fld.Type())
						}
					}
				} else if i < st.NumFields() {
					check(el, st.Field(i).Type())
				}
			}
		case *ast.FuncDecl:
			if fn, ok := info.Defs[n.Name].(*types.Func); ok && n.Body != nil {
				checkReturns(n.Body, fn.Type().(*types.Signature), check)
			}
		case *ast.FuncLit:
			if sig, ok := info.TypeOf(n).(*types.Signature); ok {
				checkReturns(n.Body, sig, check)
			}
		}
		return true
	})
}

// checkReturns checks the return statements of a function's body (not
// those of the function literals inside it) against sig's result types.
func checkReturns(body *ast.BlockStmt, sig *types.Signature, check func(ast.Expr, types.Type)) {
	res := sig.Results()
	returnsOf(body, func(r *ast.ReturnStmt) {
		if len(r.Results) == res.Len() {
			for i, e := range r.Results {
				check(e, res.At(i).Type())
			}
		}
	})
}

// returnsOf calls f for the return statements of body, not those of the
// function literals inside it.
func returnsOf(body *ast.BlockStmt, f func(*ast.ReturnStmt)) {
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			f(n)
		}
		return true
	})
}

// paramType is the type of the i-th argument's parameter of sig.
func paramType(sig *types.Signature, i int, ellipsis bool) types.Type {
	ps := sig.Params()
	if ps.Len() == 0 {
		return nil
	}
	if sig.Variadic() && i >= ps.Len()-1 {
		last := ps.At(ps.Len() - 1).Type()
		if ellipsis {
			return last
		}
		if s, ok := last.(*types.Slice); ok {
			return s.Elem()
		}
		return nil
	}
	if i >= ps.Len() {
		return nil
	}
	return ps.At(i).Type()
}

// rawInto reports a value of type from, a raw database handle, that
// becomes a value of interface type to with one of the handle's raw
// methods: the handle's name, the interface's name and the method.
func rawInto(from, to types.Type) (recv, iface, method string) {
	it, ok := types.Unalias(to).Underlying().(*types.Interface)
	if !ok || it.NumMethods() == 0 || types.IsInterface(from) {
		return "", "", ""
	}
	if n := namedOf(to); n != nil && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "entgo.io/ent/dialect" {
		return "", "", ""
	}
	for m := range it.Methods() {
		if r, ok := rawType(from, m.Name()); ok {
			return r, types.TypeString(to, (*types.Package).Name), m.Name()
		}
	}
	return "", "", ""
}
