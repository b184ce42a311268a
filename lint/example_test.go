package lint_test

import (
	"fmt"
	"log"
	"slices"

	"github.com/tenantry/tenantry/lint"
)

// An app that keeps operator code in its own package, and whose generated
// client has a client-level escape hatch, configures the analyzer in code
// (for a multichecker of its own) instead of with flags.
func ExampleNewAnalyzer() {
	a, err := lint.NewAnalyzer(lint.Config{
		Allow:   slices.Concat(lint.DefaultAllow, []string{`^example\.com/app/ops(/|$)`}),
		Hatches: slices.Concat(lint.DefaultHatches, []string{"(*@ent.Client).Unscoped"}),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Name)
	// Output: tenantlint
}
