package golangci

import (
	"github.com/golangci/plugin-module-register/register"
	"golang.org/x/tools/go/analysis"

	"github.com/tenantry/tenantry/lint"
)

func init() { register.Plugin(lint.Name, New) }

// Settings are the plugin's settings.
type Settings struct {
	Allow   []string `json:"allow"`
	Hatches []string `json:"hatches"`
	Tests   bool     `json:"tests"`
}

// Plugin is tenantlint for golangci-lint.
type Plugin struct{ analyzer *analysis.Analyzer }

// New decodes the settings (unknown keys are an error) and builds the
// analyzer; a malformed pattern or hatch name fails here, at startup.
func New(settings any) (register.LinterPlugin, error) {
	s, err := register.DecodeSettings[Settings](settings)
	if err != nil {
		return nil, err
	}
	c := lint.DefaultConfig()
	if s.Allow != nil {
		c.Allow = s.Allow
	}
	if s.Hatches != nil {
		c.Hatches = s.Hatches
	}
	c.Tests = s.Tests
	a, err := lint.NewAnalyzer(c)
	if err != nil {
		return nil, err
	}
	return &Plugin{analyzer: a}, nil
}

// BuildAnalyzers implements register.LinterPlugin.
func (p *Plugin) BuildAnalyzers() ([]*analysis.Analyzer, error) {
	return []*analysis.Analyzer{p.analyzer}, nil
}

// GetLoadMode implements register.LinterPlugin: tenantlint needs types.
func (*Plugin) GetLoadMode() string { return register.LoadModeTypesInfo }
