package dockerfile

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// fileLevel are the errors that concern the whole file, not a line.
var fileLevel = regexp.MustCompile(`^Dockerfile: (the Dockerfile is empty|no FROM instruction|target stage)`)

var located = regexp.MustCompile(`^Dockerfile:([0-9]+): `)

// FuzzParse: Parse must not panic or hang on any input, every error it
// returns must name FILE:LINE with a line of the file, a graph's stages and
// steps must lie within the file, and expanding them (mounts included) must
// not panic either.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.Dockerfile")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"\ufeff# escape=`\r\nFROM a\r\nRUN echo `\r\n  b\r\n",
		"# syntax=x\n# escape=0\nFROM a\n",
		"FROM a\nRUN <<EOF <<EOT\nx\nEOF\ny\nEOT\n",
		"FROM a\nRUN echo \x00\n",
		"FROM a AS b\nFROM b\nENV A=${B:?unset} C=$A\nWORKDIR ${A:-/x}\n",
		"FROM a\nONBUILD RUN x\nHEALTHCHECK CMD x\nRUN --mount=type=cache x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var g *Graph
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			g, err = Parse(bytes.NewReader(data), "Dockerfile", ParseOptions{BuildArgs: map[string]string{"A": "1"}})
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Parse hung on %q", data)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			for _, e := range leaves(err) {
				checkLocated(t, e.Error(), lines)
			}
			return
		}
		if bytes.IndexByte(data, 0) >= 0 {
			t.Fatalf("a Dockerfile holding a NUL byte parsed: %q", data)
		}
		ex := g.Expander()
		for _, st := range g.Stages {
			if st.Location.Line < 1 || st.Location.Line > lines {
				t.Errorf("FROM at line %d of %d", st.Location.Line, lines)
			}
			env := NewVars([]string{"A=1", "PATH=/bin"})
			for _, s := range st.Steps {
				if s.Location.Line < 1 || s.Location.EndLine < s.Location.Line || s.Location.EndLine > lines {
					t.Errorf("step %q at lines %d-%d of %d", s.Text, s.Location.Line, s.Location.EndLine, lines)
				}
				c, err := ex.Expand(s.Command, env)
				if err != nil {
					continue // ${X:?message} is a build-time error, reported with the step
				}
				switch c := c.(type) {
				case *Env:
					for _, kv := range c.Pairs {
						env = env.With(kv.Key, kv.Value)
					}
				case *Run:
					_, _ = ex.Mounts(c, env)
				}
			}
		}
	})
}

// leaves returns the errors errors.Join put together, or err itself.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkLocated(t *testing.T, msg string, lines int) {
	t.Helper()
	if fileLevel.MatchString(msg) {
		return
	}
	m := located.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("error without FILE:LINE: %q", msg)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > lines {
		t.Fatalf("error at line %d of a %d-line file: %q", n, lines, msg)
	}
}
