// Command tenantlint checks the tenant scoping of tenantry apps at build
// time (see package github.com/tenantry/tenantry/lint for the rules).
//
// Under go vet, which speaks the unitchecker protocol with it and passes
// its flags through:
//
//	go vet -vettool=$(which tenantlint) ./...
//	go vet -vettool=$(which tenantlint) -tenantlint.allow='(^|/)migrate(/|$),^example\.com/app/ops$' ./...
//
// Standalone, on package patterns (it loads and type-checks from source):
//
//	tenantlint ./...
//	tenantlint -tenantlint.tests ./...
//	tenantlint -fix ./...      # apply suggested fixes
//
// Flags: -tenantlint.allow (comma-separated regular expressions of package
// paths that may bypass scoping), -tenantlint.hatch (comma-separated
// escape-hatch functions) and -tenantlint.tests (also report in _test.go
// files); standalone, the common analysis flags (-fix, -diff, -json, -c=N)
// apply too. The exit status is non-zero when anything is reported.
package main
