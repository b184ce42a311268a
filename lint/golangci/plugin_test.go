package golangci_test

import (
	"testing"

	"github.com/golangci/plugin-module-register/register"

	_ "github.com/tenantry/tenantry/lint/golangci"
)

func TestPlugin(t *testing.T) {
	newPlugin, err := register.GetPlugin("tenantlint")
	if err != nil {
		t.Fatal(err)
	}
	// Settings arrive as decoded YAML: maps and slices of any.
	p, err := newPlugin(map[string]any{
		"allow": []any{`(^|/)internal/admin(/|$)`, `^example\.com/app/ops$`},
		"tests": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	as, err := p.BuildAnalyzers()
	if err != nil || len(as) != 1 || as[0].Name != "tenantlint" {
		t.Fatalf("BuildAnalyzers() = %v, %v", as, err)
	}
	if p.GetLoadMode() != register.LoadModeTypesInfo {
		t.Errorf("load mode %q", p.GetLoadMode())
	}
	if _, err := newPlugin(nil); err != nil {
		t.Errorf("no settings: %v", err)
	}
	for _, bad := range []map[string]any{
		{"allow": []any{"(unclosed"}},
		{"hatches": []any{"nodot"}},
		{"alow": []any{"x"}},
	} {
		if _, err := newPlugin(bad); err == nil {
			t.Errorf("settings %v: no error", bad)
		}
	}
}
