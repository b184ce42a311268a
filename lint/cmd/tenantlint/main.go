// Command tenantlint checks tenant scoping of tenantry apps at build time.
//
// Under go vet (the unitchecker protocol; go vet passes the flags through):
//
//	go vet -vettool=$(which tenantlint) ./...
//	go vet -vettool=$(which tenantlint) -tenantlint.allow='(^|/)migrate(/|$),^example.com/app/ops$' ./...
//
// Standalone, on package patterns:
//
//	tenantlint ./...
//	tenantlint -tenantlint.tests ./...
//
// The flags are those of package lint (github.com/tenantry/tenantry/lint):
// -tenantlint.allow, -tenantlint.hatch and -tenantlint.tests. Standalone, the
// common analysis flags apply too, e.g. -fix to apply suggested fixes and
// -json for machine-readable output. The exit status is non-zero when a
// finding is reported.
package main

import (
	"golang.org/x/tools/go/analysis/multichecker"

	"github.com/tenantry/tenantry/lint"
)

func main() { multichecker.Main(lint.Analyzer) }
