package dockerfile

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// dump is a stable textual form of a graph, for golden files.
func dump(g *Graph) string {
	var b strings.Builder
	for _, w := range g.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, kv := range g.MetaArgs.List() {
		if !isPlatformArg(kv.Key) {
			fmt.Fprintf(&b, "meta arg %q=%q\n", kv.Key, kv.Value)
		}
	}
	for _, s := range g.Stages {
		fmt.Fprintf(&b, "stage %d %q FROM %q", s.Index, s.Name, s.BaseName)
		if s.Base != nil {
			fmt.Fprintf(&b, " (stage %d)", s.Base.Index)
		}
		if s.Platform != "" {
			fmt.Fprintf(&b, " --platform=%q", s.Platform)
		}
		fmt.Fprintf(&b, " at %s (lines %d-%d)\n", s.Location, s.Location.Line, s.Location.EndLine)
		if deps := s.Deps(); len(deps) > 0 {
			fmt.Fprintf(&b, "  deps:%s\n", stageList(deps))
		}
		for _, st := range s.Steps {
			fmt.Fprintf(&b, "  step at %s (lines %d-%d): %q\n", st.Location, st.Location.Line, st.Location.EndLine, st.Text)
			fmt.Fprintf(&b, "    %s\n", dumpCommand(st.Command))
		}
	}
	fmt.Fprintf(&b, "target: %d\nneeded:%s\n", g.Target.Index, stageList(g.Needed()))
	return b.String()
}

func stageList(ss []*Stage) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, " %d", s.Index)
	}
	return b.String()
}

// dumpCommand prints a command as its type and JSON, with stage pointers
// shown as indexes.
func dumpCommand(c Command) string {
	var extra string
	switch c := c.(type) {
	case *Copy:
		if c.FromStage != nil {
			extra = fmt.Sprintf(" from-stage=%d", c.FromStage.Index)
		}
		cc := *c
		cc.FromStage = nil
		c = &cc
		return fmt.Sprintf("%T %s%s", c, mustJSON(c), extra)
	case *Run:
		for _, m := range c.Mounts {
			if m.FromStage != nil {
				extra += fmt.Sprintf(" mount-from-stage=%d", m.FromStage.Index)
			}
		}
		rc := *c
		rc.Mounts = nil
		var raws []string
		for _, m := range c.Mounts {
			raws = append(raws, m.Raw)
		}
		return fmt.Sprintf("%T %s mounts=%q%s", c, mustJSON(&rc), raws, extra)
	}
	return fmt.Sprintf("%T %s", c, mustJSON(c))
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestGolden parses testdata/NAME.Dockerfile (with build args from a
// "# test-build-args: K=V …" first line and a target from "# test-target:")
// and compares with NAME.golden.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.Dockerfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".Dockerfile")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			opts := testOptions(string(data))
			// "Dockerfile" as the given name keeps goldens independent of testdata paths.
			g, err := Parse(strings.NewReader(string(data)), "Dockerfile", opts)
			var got string
			if err != nil {
				got = "error:\n" + err.Error() + "\n"
			} else {
				got = dump(g)
			}
			golden := strings.TrimSuffix(f, ".Dockerfile") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

func testOptions(data string) ParseOptions {
	var opts ParseOptions
	for _, line := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(line, "# test-build-args:"); ok {
			opts.BuildArgs = map[string]string{}
			for _, kv := range strings.Fields(v) {
				k, val, _ := strings.Cut(kv, "=")
				opts.BuildArgs[k] = val
			}
		}
		if v, ok := strings.CutPrefix(line, "# test-target:"); ok {
			opts.Target = strings.TrimSpace(v)
		}
	}
	return opts
}

// TestParseRefusesWhatCannotRun: lines too long for BuildKit's scanner are
// reported at their own line (BuildKit names the line before), and NUL
// bytes, which no process argument can carry, fail the parse with their
// line instead of the step at run time; so do bad parser directives.
func TestParseRefusesWhatCannotRun(t *testing.T) {
	long := func(n int) string { return "LABEL x=" + strings.Repeat("a", n-len("LABEL x=")) }
	cases := []struct {
		name, src, want string
	}{
		{"long label on line 5", "FROM alpine\nRUN a\nRUN b\nRUN c\n" + long(70000) + "\nRUN d\n",
			"Dockerfile:5: line longer than 65535 bytes"},
		{"long first line", long(70000) + "\nFROM alpine\n", "Dockerfile:1: line longer than 65535 bytes"},
		{"just too long", "FROM alpine\n" + long(65536) + "\n", "Dockerfile:2: line longer than 65535 bytes"},
		{"long last line without newline", "FROM alpine\n\n" + long(65536), "Dockerfile:3: line longer than 65535 bytes"},
		{"long continuation line", "FROM alpine\nRUN a \\\n  " + strings.Repeat("b", 70000) + "\n",
			"Dockerfile:3: line longer than 65535 bytes"},
		{"long heredoc line", "FROM alpine\nRUN <<EOF\necho\n" + strings.Repeat("b", 70000) + "\nEOF\n",
			"Dockerfile:4: line longer than 65535 bytes"},
		{"NUL in RUN", "FROM alpine\nRUN echo a\nRUN echo \x00b\n", "Dockerfile:3: NUL byte at column 10"},
		{"NUL in heredoc", "FROM alpine\nRUN <<EOF\necho\necho \x00\nEOF\n", "Dockerfile:4: NUL byte at column 6"},
		{"NUL in ENV", "FROM alpine\nENV A=\x00\n", "Dockerfile:2: NUL byte at column 7"},
		{"bad escape directive on line 1", "# escape=0\nFROM alpine\n", "Dockerfile:1: invalid escape token"},
		{"bad escape directive on line 3", "# syntax=docker/dockerfile:1\n#check=skip=all\n  # escape = x\nFROM alpine\n", "Dockerfile:3: invalid escape token"},
		{"repeated directive", "# escape=`\n# escape=\\\nFROM alpine\n", "Dockerfile:2: only one escape parser directive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.src), "Dockerfile", ParseOptions{})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("err = %.200v, want it to start with %q", err, c.want)
			}
		})
	}
	ok := "FROM alpine\n" + long(65535) + "\n" + long(65535)
	g, err := Parse(strings.NewReader(ok), "Dockerfile", ParseOptions{})
	if err != nil || len(g.Target.Steps) != 2 || g.Target.Steps[1].Location.Line != 3 {
		t.Errorf("lines of exactly 65535 bytes: %.200v", err)
	}
}
