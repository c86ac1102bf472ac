package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stepexec/stepexec/integration/conformance"
)

// reportFixture makes a one-case corpus, results for BuildKit and
// stepexec, and a KNOWN-DIFFERENCES file with the given rows.
func reportFixture(t *testing.T, stepexecCmd []string, stepexecError string, rows string) (corpus, results, known string) {
	t.Helper()
	root := t.TempDir()
	corpus, results = filepath.Join(root, "corpus"), filepath.Join(root, "results")
	caseDir := filepath.Join(corpus, "01-case")
	for _, d := range []string{caseDir, filepath.Join(results, "buildkit"), filepath.Join(results, "stepexec")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(caseDir, "Dockerfile"), []byte("FROM alpine\n"))
	result := func(cmd []string) []byte {
		data, err := conformance.Encode(&conformance.Result{DeltaFromBase: true, Platform: "linux/amd64",
			History: []string{}, Config: conformance.Config{Cmd: cmd}, FS: map[string]*conformance.Entry{}})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	write(filepath.Join(results, "buildkit", "01-case.json"), result([]string{"/bin/sh"}))
	if stepexecError != "" {
		write(filepath.Join(results, "stepexec", "01-case.error"), []byte(stepexecError))
	} else {
		write(filepath.Join(results, "stepexec", "01-case.json"), result(stepexecCmd))
	}
	known = filepath.Join(root, "KNOWN.md")
	write(known, []byte("| builder | case | what | reason |\n|---|---|---|---|\n"+rows))
	return corpus, results, known
}

func TestReport(t *testing.T) {
	link := "https://github.com/moby/buildkit"
	cases := []struct {
		name     string
		cmd      []string
		buildErr string
		rows     string
		pass     bool
	}{
		{"identical", []string{"/bin/sh"}, "", "", true},
		{"unlisted difference", []string{"/bin/bash"}, "", "", false},
		{"listed difference", []string{"/bin/bash"}, "", "| stepexec | 01-* | config.Cmd | on purpose, see " + link + " |\n", true},
		{"listed for another builder only", []string{"/bin/bash"}, "", "| buildah | * | config.Cmd | buildah's |\n", false},
		{"failed build", nil, "stepexec: exit status 1\nError: Dockerfile:2: COPY is not supported yet\n", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			corpus, results, known := reportFixture(t, c.cmd, c.buildErr, c.rows)
			// The first run writes the golden from BuildKit's result.
			pass, err := reportCmd([]string{"-corpus", corpus, "-results", results, "-known", known, "-update"})
			if err != nil {
				t.Fatal(err)
			}
			if pass != c.pass {
				t.Errorf("report passed %v, want %v", pass, c.pass)
			}
			if _, err := os.Stat(filepath.Join(corpus, "01-case", conformance.ExpectedFile)); err != nil {
				t.Errorf("-update wrote no golden: %v", err)
			}
		})
	}
}

func TestReportWithoutGoldenFails(t *testing.T) {
	corpus, results, known := reportFixture(t, []string{"/bin/sh"}, "", "")
	pass, err := reportCmd([]string{"-corpus", corpus, "-results", results, "-known", known})
	if err != nil {
		t.Fatal(err)
	}
	if pass {
		t.Error("a case without expected.json passed")
	}
}
