package dockerfile

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// dump is a stable textual form of a plan, for golden files.
func dump(p *Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "base: %q at %s (lines %d-%d)\n", p.Base, p.BaseLocation, p.BaseLocation.Line, p.BaseLocation.EndLine)
	fmt.Fprintf(&b, "stage: %q\n", p.Stage)
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "step %d at %s (lines %d-%d): %q\n", s.Index, s.Location, s.Location.Line, s.Location.EndLine, s.Text)
		switch c := s.Command.(type) {
		case *Run:
			if c.Shell {
				fmt.Fprintf(&b, "  RUN shell %q\n", c.Script)
			} else {
				fmt.Fprintf(&b, "  RUN exec %q\n", c.Args)
			}
		case *Cmd:
			fmt.Fprintf(&b, "  CMD shell=%v %q\n", c.Shell, c.Args)
		case *Entrypoint:
			fmt.Fprintf(&b, "  ENTRYPOINT shell=%v %q\n", c.Shell, c.Args)
		case *Env:
			fmt.Fprintf(&b, "  ENV %s\n", dumpPairs(c.Pairs))
		case *Label:
			fmt.Fprintf(&b, "  LABEL %s\n", dumpPairs(c.Pairs))
		case *Workdir:
			fmt.Fprintf(&b, "  WORKDIR %q\n", c.Path)
		default:
			fmt.Fprintf(&b, "  unknown %T\n", c)
		}
	}
	return b.String()
}

func dumpPairs(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%q=%q", kv.Key, kv.Value))
	}
	return strings.Join(parts, " ")
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.Dockerfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".Dockerfile")
		t.Run(name, func(t *testing.T) {
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// "Dockerfile" as the given name keeps goldens independent of testdata paths.
			p, err := Parse(r, "Dockerfile")
			var got string
			if err != nil {
				got = "error:\n" + err.Error() + "\n"
			} else {
				got = dump(p)
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
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s: got\n%s\nwant\n%s", golden, got, want)
			}
		})
	}
}

func TestParseFileNamesPathInErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub.Dockerfile")
	if err := os.WriteFile(path, []byte("FROM alpine\nCOPY . /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	if want := path + ":2: COPY is not supported yet"; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) && (err == nil || !strings.Contains(err.Error(), "no such file")) {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestTarget(t *testing.T) {
	src := "FROM golang AS build\nRUN make\nFROM alpine AS final\nCOPY x y\n"
	p, err := ParseWithOptions(strings.NewReader(src), "Dockerfile", ParseOptions{Target: "BUILD"})
	if err != nil {
		t.Fatalf("target build: %v (COPY in the final stage must not matter)", err)
	}
	if p.Base != "golang" || p.Stage != "build" || len(p.Steps) != 1 || p.Steps[0].Text != "RUN make" {
		t.Errorf("plan %s", dump(p))
	}
	if _, err := ParseWithOptions(strings.NewReader(src), "Dockerfile", ParseOptions{}); err == nil || err.Error() != "Dockerfile:4: COPY is not supported yet" {
		t.Errorf("default target: err = %v", err)
	}
	if _, err := ParseWithOptions(strings.NewReader(src), "Dockerfile", ParseOptions{Target: "nope"}); err == nil || err.Error() != `Dockerfile: target stage "nope" not found` {
		t.Errorf("missing target: err = %v", err)
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string // a Dockerfile; its last step is expanded
		env  []string
		want Command
	}{
		{"workdir from env", "FROM a\nWORKDIR /x/$A\n", []string{"A=1"}, &Workdir{Path: "/x/1"}},
		{"braces", "FROM a\nWORKDIR /x/${A}y\n", []string{"A=1"}, &Workdir{Path: "/x/1y"}},
		{"later env wins", "FROM a\nWORKDIR /$A\n", []string{"A=1", "A=2"}, &Workdir{Path: "/2"}},
		{"default when unset", "FROM a\nWORKDIR ${A:-def}\n", nil, &Workdir{Path: "def"}},
		{"default not used when set", "FROM a\nWORKDIR ${A:-def}\n", []string{"A=set"}, &Workdir{Path: "set"}},
		{"alternative when set", "FROM a\nWORKDIR ${A:+alt}\n", []string{"A=x"}, &Workdir{Path: "alt"}},
		{"unset is empty", "FROM a\nWORKDIR /x$NOPE/y\n", nil, &Workdir{Path: "/x/y"}},
		{"escaped dollar", "FROM a\nWORKDIR /x/\\$A\n", []string{"A=1"}, &Workdir{Path: "/x/$A"}},
		{"escaped with backtick escape", "# escape=`\nFROM a\nWORKDIR C:\\x\\`$A\n", []string{"A=1"}, &Workdir{Path: `C:\x\$A`}},
		{"env values", "FROM a\nENV B=$A C=\"${A}-q\" D='$A'\n", []string{"A=1"},
			&Env{Pairs: []KeyValue{{"B", "1"}, {"C", "1-q"}, {"D", "$A"}}}},
		{"env same instruction sees old value", "FROM a\nENV A=2 B=$A\n", []string{"A=1"},
			&Env{Pairs: []KeyValue{{"A", "2"}, {"B", "1"}}}},
		{"env path append", "FROM a\nENV PATH=/opt/bin:$PATH\n", []string{"PATH=/usr/bin:/bin"},
			&Env{Pairs: []KeyValue{{"PATH", "/opt/bin:/usr/bin:/bin"}}}},
		{"label", "FROM a\nLABEL v=$V \"k $V\"=x\n", []string{"V=7"}, &Label{Pairs: []KeyValue{{"v", "7"}, {"k 7", "x"}}}},
		{"run unchanged", "FROM a\nRUN echo $A\n", []string{"A=1"}, &Run{Shell: true, Script: "echo $A"}},
		{"cmd unchanged", "FROM a\nCMD [\"echo\", \"$A\"]\n", []string{"A=1"}, &Cmd{Args: []string{"echo", "$A"}}},
		{"entrypoint unchanged", "FROM a\nENTRYPOINT echo $A\n", []string{"A=1"}, &Entrypoint{Shell: true, Args: []string{"echo $A"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(strings.NewReader(tc.src), "Dockerfile")
			if err != nil {
				t.Fatal(err)
			}
			orig := p.Steps[len(p.Steps)-1].Command
			before := fmt.Sprintf("%#v", orig)
			got, err := p.Expand(orig, NewEnvironment(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Expand = %#v, want %#v", got, tc.want)
			}
			if after := fmt.Sprintf("%#v", orig); after != before {
				t.Errorf("Expand modified the plan: %s -> %s", before, after)
			}
		})
	}
}

func TestExpandError(t *testing.T) {
	p, err := Parse(strings.NewReader("FROM a\nWORKDIR ${A:?must be set}\n"), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Expand(p.Steps[0].Command, nil); err == nil || !strings.Contains(err.Error(), "must be set") {
		t.Fatalf("err = %v, want the ${A:?} message", err)
	}
}

// TestParseRefusesWhatCannotRun: lines BuildKit's scanner cannot hold are
// reported at their own line (BuildKit names the line before), and NUL
// bytes, which no process argument can carry, fail the parse with their
// line instead of the step at run time.
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
			_, err := Parse(strings.NewReader(c.src), "Dockerfile")
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("err = %.200v, want it to start with %q", err, c.want)
			}
		})
	}
	ok := "FROM alpine\n" + long(65535) + "\n" + long(65535)
	p, err := Parse(strings.NewReader(ok), "Dockerfile")
	if err != nil || len(p.Steps) != 2 || p.Steps[1].Location.Line != 3 {
		t.Errorf("lines of exactly 65535 bytes: %.200v", err)
	}
}

func TestParseFileRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Dockerfile")
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ParseFile(path)
		done <- err
	}()
	select {
	case err := <-done:
		if want := path + " is a named pipe (FIFO), not a regular file"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want one saying %q", err, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ParseFile blocked on a FIFO")
	}
}

func TestEnvironment(t *testing.T) {
	e := NewEnvironment([]string{"PATH=/bin", "A=1", "D=x", "D=y"})
	e.Set("A", "2")
	e.Set("B", "x=y")
	e.Set("D", "z")
	if got := strings.Join(e.List(), " "); got != "PATH=/bin A=2 D=x D=z B=x=y" {
		t.Errorf("list = %q", got)
	}
	if v, ok := e.Get("B"); v != "x=y" || !ok {
		t.Errorf("Get(B) = %q, %v", v, ok)
	}
	if v, ok := e.Get("C"); v != "" || ok {
		t.Errorf("Get(C) = %q, %v", v, ok)
	}
	if got := strings.Join(e.Keys(), " "); got != "PATH A D B" {
		t.Errorf("keys = %q", got)
	}
}
