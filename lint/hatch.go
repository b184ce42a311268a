package lint

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"
)

// wrapperFact marks a function (or a package-level variable holding one)
// that reaches an escape hatch: its body refers to a hatch or to another
// object with this fact. It is exported for every such object in every
// package, allowed or not, so callers in other packages are checked too.
type wrapperFact struct {
	// Hatch is the hatch reached, e.g. "tenancy.Unscoped".
	Hatch string
	// Chain is the path from the object to the hatch, both included.
	Chain []string
}

func (*wrapperFact) AFact() {}

func (f *wrapperFact) String() string {
	return "reaches " + f.Hatch + " via " + strings.Join(f.Chain, " → ")
}

// maxChain bounds the chain carried in facts and messages.
const maxChain = 6

func extend(obj types.Object, f *wrapperFact) *wrapperFact {
	chain := append([]string{objName(obj)}, f.Chain...)
	if len(chain) > maxChain {
		chain = append(chain[:maxChain-2:maxChain-2], "…", chain[len(chain)-1])
	}
	return &wrapperFact{Hatch: f.Hatch, Chain: chain}
}

// node is a function or package-level variable of this package and the
// functions and variables its body or initializer refers to.
type node struct {
	obj  types.Object
	refs []types.Object
}

// target returns the function or package-level variable id refers to, with
// instantiated generics replaced by their origin; nil for anything else.
func (c *checker) target(id *ast.Ident) types.Object {
	switch o := c.pass.TypesInfo.Uses[id].(type) {
	case *types.Func:
		return o.Origin()
	case *types.Var:
		if o.Pkg() != nil && !o.IsField() && o.Parent() == o.Pkg().Scope() {
			return o
		}
	}
	return nil
}

// reach returns what obj reaches: itself if it is a hatch, else its fact
// (computed here or imported), else nil.
func (c *checker) reach(obj types.Object) *wrapperFact {
	if fn, ok := obj.(*types.Func); ok {
		if h := c.cfg.hatchOf(fn, c.ents); h != nil {
			return &wrapperFact{Hatch: objName(fn), Chain: []string{objName(fn)}}
		}
	}
	if obj.Pkg() == c.pass.Pkg {
		return c.wrappers[obj]
	}
	var f wrapperFact
	if c.pass.ImportObjectFact(obj, &f) {
		return &f
	}
	return nil
}

// findWrappers computes which functions and package-level variables of the
// package reach a hatch (a fixed point over the package's references, on
// top of the facts of imported packages) and exports a fact for each.
func (c *checker) findWrappers() {
	info := c.pass.TypesInfo
	var nodes []*node
	c.quietDecl = map[types.Object]bool{}
	c.linked = map[types.Object]*hatch{}
	refsOf := func(n ast.Node) []types.Object {
		var refs []types.Object
		ast.Inspect(n, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				if t := c.target(id); t != nil {
					refs = append(refs, t)
				}
			}
			return true
		})
		return refs
	}
	// assigned holds the package-level variables that function bodies
	// (init, say) assign: such a variable reaches what the assigned value
	// refers to, as if it were its initializer.
	assigned := map[types.Object]*node{}
	assignments := func(body *ast.BlockStmt, quiet bool) {
		ast.Inspect(body, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok || as.Tok != token.ASSIGN {
				return true
			}
			for i, lhs := range as.Lhs {
				v := c.packageVar(lhs)
				if v == nil || !canHoldFunc(c.pass.TypesInfo.TypeOf(lhs), nil) {
					continue // data computed unscoped is not a way to run unscoped
				}
				nd := assigned[v]
				if nd == nil {
					nd = &node{obj: v}
					assigned[v] = nd
				}
				if len(as.Rhs) == len(as.Lhs) {
					nd.refs = append(nd.refs, refsOf(as.Rhs[i])...)
				} else {
					for _, e := range as.Rhs {
						nd.refs = append(nd.refs, refsOf(e)...)
					}
				}
				if quiet {
					c.quietDecl[v] = true
				}
			}
			return true
		})
	}
	linknames := linknames(c.pass.Files)
	for _, f := range c.pass.Files {
		if !c.cfg.tests && c.isTest(f) {
			continue // out of sight unless -tests
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				fn, ok := info.Defs[d.Name].(*types.Func)
				if !ok {
					continue
				}
				if d.Body == nil {
					// A declaration without a body may be the hatch
					// itself under another name.
					if h := c.cfg.linkedHatch(linknames[d.Name.Name]); h != nil {
						c.linked[fn] = h
						nodes = append(nodes, &node{obj: fn})
						if !c.reportsIn(f) {
							c.quietDecl[fn] = true
						}
					}
					continue
				}
				assignments(d.Body, !c.reportsIn(f))
				if d.Recv == nil && d.Name.Name == "init" {
					continue // nothing can refer to it
				}
				nodes = append(nodes, &node{obj: fn, refs: refsOf(d.Body)})
				if !c.reportsIn(f) {
					c.quietDecl[fn] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					vs, ok := s.(*ast.ValueSpec)
					if !ok || len(vs.Values) == 0 {
						continue
					}
					for i, name := range vs.Names {
						v, ok := info.Defs[name].(*types.Var)
						if !ok || name.Name == "_" {
							continue
						}
						var refs []types.Object
						if len(vs.Values) == len(vs.Names) {
							refs = refsOf(vs.Values[i])
						} else {
							for _, e := range vs.Values {
								refs = append(refs, refsOf(e)...)
							}
						}
						nodes = append(nodes, &node{obj: v, refs: refs})
						if !c.reportsIn(f) {
							c.quietDecl[v] = true
						}
					}
				}
			}
		}
	}

	for _, n := range nodes {
		if a := assigned[n.obj]; a != nil {
			n.refs = append(n.refs, a.refs...)
			delete(assigned, n.obj)
		}
	}
	for _, a := range assigned {
		nodes = append(nodes, a)
	}

	c.wrappers = map[types.Object]*wrapperFact{}
	for fn, h := range c.linked {
		c.wrappers[fn] = &wrapperFact{Hatch: h.String(), Chain: []string{objName(fn), h.String()}}
	}
	for changed := true; changed; {
		changed = false
		for _, n := range nodes {
			if c.wrappers[n.obj] != nil {
				continue
			}
			for _, r := range n.refs {
				if r == n.obj {
					continue
				}
				if f := c.reach(r); f != nil {
					c.wrappers[n.obj] = extend(n.obj, f)
					changed = true
					break
				}
			}
		}
	}
	if c.pass.Pkg.Name() == "main" {
		return // nothing imports it (and go test's generated main is not ours)
	}
	for _, n := range nodes {
		if f := c.wrappers[n.obj]; f != nil {
			c.pass.ExportObjectFact(n.obj, f)
		}
	}
}

// linknames maps the local names of the package's //go:linkname
// directives to their targets. The compiler takes a directive from any
// file of the package, not only the declaring one.
func linknames(files []*ast.File) map[string]string {
	m := map[string]string{}
	for _, f := range files {
		for _, g := range f.Comments {
			for _, cm := range g.List {
				if fields := strings.Fields(cm.Text); len(fields) == 3 && fields[0] == "//go:linkname" {
					m[fields[1]] = fields[2]
				}
			}
		}
	}
	return m
}

// canHoldFunc reports whether a value of type t can hold a function,
// directly or inside: a function, an interface, a type parameter, or a
// pointer, slice, array, channel, map or struct with one.
func canHoldFunc(t types.Type, seen map[types.Type]bool) bool {
	if t == nil || seen[t] {
		return false
	}
	if seen == nil {
		seen = map[types.Type]bool{}
	}
	seen[t] = true
	if _, ok := types.Unalias(t).(*types.TypeParam); ok {
		return true
	}
	switch u := types.Unalias(t).Underlying().(type) {
	case *types.Signature, *types.Interface:
		return true
	case *types.Pointer:
		return canHoldFunc(u.Elem(), seen)
	case *types.Slice:
		return canHoldFunc(u.Elem(), seen)
	case *types.Array:
		return canHoldFunc(u.Elem(), seen)
	case *types.Chan:
		return canHoldFunc(u.Elem(), seen)
	case *types.Map:
		return canHoldFunc(u.Key(), seen) || canHoldFunc(u.Elem(), seen)
	case *types.Struct:
		for f := range u.Fields() {
			if canHoldFunc(f.Type(), seen) {
				return true
			}
		}
	}
	return false
}

// packageVar returns the package-level variable of this package that an
// assignment to e writes: e itself, or the root of a field, index or
// dereference (V.F, V[i], *V). Nil for anything else.
func (c *checker) packageVar(e ast.Expr) *types.Var {
	for {
		switch x := e.(type) {
		case *ast.ParenExpr:
			e = x.X
		case *ast.SelectorExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.StarExpr:
			e = x.X
		case *ast.Ident:
			v, ok := c.pass.TypesInfo.Uses[x].(*types.Var)
			if !ok || v.Pkg() != c.pass.Pkg || v.IsField() || v.Parent() != v.Pkg().Scope() {
				return nil
			}
			return v
		default:
			return nil
		}
	}
}

// checkHatchUses reports every reference to a hatch (rule 1) or to a
// function or variable that reaches one (rule 2): calls, function values,
// method values and method expressions alike.
func (c *checker) checkHatchUses(f *ast.File) {
	var self []types.Object // the declarations we are in
	var walk func(n ast.Node) bool
	walk = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Body == nil {
				if h := c.linked[c.pass.TypesInfo.Defs[n.Name]]; h != nil {
					c.report(n.Name.Pos(), "hatch", fmt.Sprintf(
						"%s is the escape hatch %s under another name (go:linkname), declared in package %s, which is not allowed to bypass tenant scoping: "+
							"scope the context with tenancy.WithTenant(ctx, id), or move this code to an allowed package (-tenantlint.allow)",
						n.Name.Name, h, c.pass.Pkg.Path()))
				}
				return false
			}
			self = append(self, c.pass.TypesInfo.Defs[n.Name])
			ast.Inspect(n.Body, walk)
			self = self[:len(self)-1]
			return false
		case *ast.Ident:
			t := c.target(n)
			if t == nil || len(self) > 0 && t == self[len(self)-1] {
				return true
			}
			if fn, ok := t.(*types.Func); ok {
				if h := c.cfg.hatchOf(fn, c.ents); h != nil {
					c.report(n.Pos(), "hatch", fmt.Sprintf(
						"%s used in package %s, which is not allowed to bypass tenant scoping: "+
							"the returned context turns off the tenant filter and row-level security for every query run with it; "+
							"scope the context with tenancy.WithTenant(ctx, id), or move this code to an allowed package (-tenantlint.allow, default: paths under migrate or internal/admin)",
						objName(fn), c.pass.Pkg.Path()))
					return true
				}
			}
			// A wrapper of this package is reported where it reaches the
			// hatch (or another package's wrapper), not at each caller
			// up the chain, unless findings in its own file are not
			// reported (generated code, tests).
			if t.Pkg() == c.pass.Pkg && !c.quietDecl[t] {
				return true
			}
			if w := c.reach(t); w != nil {
				c.report(n.Pos(), "wrapper", fmt.Sprintf(
					"%s reaches the escape hatch %s (%s) and is used in package %s, which is not allowed to bypass tenant scoping: "+
						"it runs unscoped on this package's behalf; call a tenant-scoped alternative with tenancy.WithTenant(ctx, id), or move this code to an allowed package (-tenantlint.allow)",
					objName(t), w.Hatch, strings.Join(w.Chain, " → "), c.pass.Pkg.Path()))
			}
		}
		return true
	}
	ast.Inspect(f, walk)
}
