package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleKnown = "# Known differences\n\nSome text | with a bar.\n\n" +
	"| builder | case | what | reason |\n" +
	"|---|---|---|---|\n" +
	"| stepexec | 01-run | `history` | see [convert.go](https://github.com/moby/buildkit/blob/v0.34.2/x.go#L1) |\n" +
	"| buildah | * | config.Labels[io.buildah.version] | buildah labels images |\n" +
	"| buildah | 5?-copy-* | fs /etc/* | a \\| bar in the reason |\n"

func TestParseKnownAndMatch(t *testing.T) {
	known, err := ParseKnown([]byte(sampleKnown))
	if err != nil {
		t.Fatal(err)
	}
	if len(known) != 3 {
		t.Fatalf("parsed %d rows, want 3: %+v", len(known), known)
	}
	if known[0].What != "history" || known[0].Line != 7 || known[2].Reason != "a | bar in the reason" {
		t.Errorf("rows: %+v %+v", known[0], known[2])
	}
	cases := []struct {
		builder, caseName, what string
		listed                  bool
	}{
		{"stepexec", "01-run", "history", true},
		{"stepexec", "01-run-forms", "history", false}, // case names match whole
		{"buildah", "01-run", "history", false},        // rows are per builder
		{"buildah", "99-any", "config.Labels[io.buildah.version]", true},
		{"buildah", "55-copy-chown", "fs /etc/deep/er", true}, // * spans /
		{"buildah", "55-move", "fs /etc/x", false},
		{"stepexec", "55-copy-chown", "fs /etc/x", false},
	}
	used := map[*Known]bool{}
	for _, c := range cases {
		listed, _ := Classify(known, c.builder, c.caseName, []Difference{{What: c.what}}, used)
		if (len(listed) == 1) != c.listed {
			t.Errorf("%s %s %s: listed %v, want %v", c.builder, c.caseName, c.what, len(listed) == 1, c.listed)
		}
	}
	if len(used) != 3 {
		t.Errorf("%d rows used, want 3", len(used))
	}
}

func TestParseKnownRejects(t *testing.T) {
	head := "| builder | case | what | reason |\n|---|---|---|---|\n"
	for row, want := range map[string]string{
		"| stepexec | 01 | history | no link |":            "https://",
		"| docker | 01 | history | https://x |":            "unknown builder",
		"| buildah | 01 | history |":                       "want 4 cells",
		"| buildah | | history | empty case |":             "must all be given",
		"| buildkit | 01 | fs /x | drift, not explained |": "https://",
	} {
		_, err := ParseKnown([]byte(head + row + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: error %v, want one at line 3 saying %q", row, err, want)
		}
	}
}

// The repository's own file parses, and every row names a case that exists.
func TestKnownDifferencesFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "KNOWN-DIFFERENCES.md"))
	if err != nil {
		t.Fatal(err)
	}
	known, err := ParseKnown(data)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := Load(filepath.Join("..", "testdata", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range known {
		found := false
		for _, c := range cases {
			found = found || k.caseRE.MatchString(c.Name)
		}
		if !found {
			t.Errorf("KNOWN-DIFFERENCES.md:%d names no case of the corpus: %q", k.Line, k.Case)
		}
	}
}
