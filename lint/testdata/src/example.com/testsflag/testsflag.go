// Package testsflag is checked with -tenantlint.tests: its test file is
// reported like any other.
package testsflag
