// Command tenantrygen runs Ent's code generator with the tenantry extension.
//
//	go run github.com/tenantry/tenantry/gen/cmd/tenantrygen [-target DIR] [-package PATH] ./ent/schema
//
// It fails, writing nothing, when a schema could let a query escape its
// tenant; the message names the schema and the fix.
package main

import (
	"flag"
	"fmt"
	"os"

	"entgo.io/ent/entc"
	entgen "entgo.io/ent/entc/gen"

	"github.com/tenantry/tenantry/gen"
)

func main() {
	target := flag.String("target", "", "directory of the generated code (default: the schema directory's parent)")
	pkg := flag.String("package", "", "Go package path of the generated code (default: derived from -target)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tenantrygen [flags] SCHEMA_DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := &entgen.Config{Target: *target, Package: *pkg}
	if err := entc.Generate(flag.Arg(0), cfg, entc.Extensions(gen.Extension{})); err != nil {
		fmt.Fprintln(os.Stderr, "tenantrygen:", err)
		os.Exit(1)
	}
}
