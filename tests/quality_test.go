// Package tests is the quality gate (the test-quality stage). It gates one candidate model:
// by default the shipped reference model; in a pipeline, a registry version or a running
// server chosen through MODELSHIP_* variables (see gate.ConfigFromEnv). Run it with JUnit:
//
//	bash scripts/gate.sh        (or: gotestsum --junitfile test-results.xml -- ./tests)
//
// Reports land in MODELSHIP_REPORT_DIR (default reports/quality), also when the gate fails.
package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelship/modelship/internal/evidence"
	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/serving"
)

var (
	gateConfig gate.Config
	report     *gate.Report
)

func TestMain(m *testing.M) {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "quality gate:", err)
		os.Exit(1)
	}
	gateConfig = gate.ConfigFromEnv(root)
	gateConfig.Serve = serving.Local
	fmt.Fprintf(os.Stderr, "quality gate: baseline %s, fixtures %s, model %s\n", gateConfig.BaselinePath, gateConfig.FixturePath, candidateName(gateConfig))
	report = gate.Run(context.Background(), gateConfig)
	code := m.Run()
	if err := report.Write(gateConfig.ReportDir); err != nil {
		fmt.Fprintln(os.Stderr, "quality gate: write reports:", err)
		code = 1
	}
	rec := report.Evidence(gateConfig, os.Args)
	if err := rec.Write(filepath.Join(gateConfig.ReportDir, evidence.FileName), evidence.SecretsFromEnv()); err != nil {
		fmt.Fprintln(os.Stderr, "quality gate: write evidence:", err)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "quality gate: %s; reports in %s\n", verdict(report), gateConfig.ReportDir)
	os.Exit(code)
}

func candidateName(cfg gate.Config) string {
	switch {
	case cfg.ServerURL != "":
		return cfg.ServerURL
	case cfg.Ref.Version != "" || cfg.Ref.GitSHA != "":
		return "registry " + cfg.Ref.String()
	default:
		return cfg.ModelFile
	}
}

func verdict(r *gate.Report) string {
	if r.Passed {
		return "PASSED for " + r.Model.Label()
	}
	return "FAILED for " + r.Model.Label() + ": " + r.FailureSummary()
}

// TestQualityGate has one subtest per check, so the JUnit report names each.
func TestQualityGate(t *testing.T) {
	if report.Error != "" {
		t.Fatalf("the gate could not evaluate the candidate: %s", report.Error)
	}
	if len(report.Checks) == 0 {
		t.Fatal("no checks ran")
	}
	for _, c := range report.Checks {
		t.Run(c.Name, func(t *testing.T) {
			if !c.Passed {
				t.Error(c.Message)
			}
		})
	}
}
