package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/internal/demo"
)

// TestDemo runs the README's first command end to end on its own clusters.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := demo.Run(context.Background(), &out, demo.Options{}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"demo finished OK", "fails closed", "row-level security", "removed the throwaway clusters",
		"provision bigco  in dedicated mode", "404, the same answer", "throttled (429 + Retry-After)", "victims:", "write: 503 Retry-After",
		"restored (same ids", "tiny-1's 2 orders untouched", "1 repaired (acme's index back)", "0 failed",
		"move acme there live", "verified true", "all readable on the target, ", "no other errors", "stop the app server gracefully"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
