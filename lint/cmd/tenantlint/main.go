package main

import (
	"golang.org/x/tools/go/analysis/multichecker"

	"github.com/tenantry/tenantry/lint"
)

// multichecker rather than singlechecker: it prefixes the analyzer's flags
// with its name (-tenantlint.allow), the names go vet passes through.
func main() { multichecker.Main(lint.Analyzer) }
