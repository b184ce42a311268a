package auth_test

import (
	"testing"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// BenchmarkParseToken is the per-request cost of the JWT path.
func BenchmarkParseToken(b *testing.B) {
	a := newAuth(b)
	tok, _ := a.Token(tenancy.NewID(), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.ParseToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAPIKey is the per-request cost of the API-key path.
func BenchmarkParseAPIKey(b *testing.B) {
	a := newAuth(b)
	key, _, _ := a.NewAPIKey(tenancy.NewID())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.ParseAPIKey(key); err != nil {
			b.Fatal(err)
		}
	}
}
