// Package golangci registers tenantlint as a golangci-lint v2 module plugin
// named "tenantlint". golangci-lint's custom build imports this package
// (see .custom-gcl.yml in lint/README.md); nothing else needs it.
//
// Settings, under linters.settings.custom.tenantlint.settings in
// .golangci.yml, mirror the flags of package lint:
//
//	allow:   [regexp, ...]   # default: lint.DefaultAllow
//	hatches: [name, ...]     # default: lint.DefaultHatches
//	tests:   false           # report in _test.go files
//
// A list that is set replaces the default.
package golangci
