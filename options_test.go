package stepexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptions(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts []Option
		want options
		err  string
	}{
		{name: "none", want: options{mode: SubIDs}},
		{name: "absolute dirs", opts: []Option{WithRoot("/s/graph"), WithRunRoot("/s/run")}, want: options{root: "/s/graph", runRoot: "/s/run"}},
		{name: "relative dirs made absolute", opts: []Option{WithRoot("graph"), WithRunRoot("./run/")}, want: options{root: filepath.Join(wd, "graph"), runRoot: filepath.Join(wd, "run")}},
		{name: "single uid", opts: []Option{WithMode(SingleUID)}, want: options{mode: SingleUID}},
		{name: "empty root", opts: []Option{WithRoot("")}, err: "WithRoot: empty directory"},
		{name: "empty run root", opts: []Option{WithRunRoot("")}, err: "WithRunRoot: empty directory"},
		{name: "unknown mode", opts: []Option{WithMode(Mode(7))}, err: "WithMode(mode(7)): want SubIDs or SingleUID"},
		{name: "the first bad option fails", opts: []Option{WithRoot("/ok"), WithMode(Mode(-1)), WithRoot("")}, err: "WithMode(mode(-1))"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := applyOptions(c.opts)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("applyOptions = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestOpenRefusesBadOptions: Open fails on a bad option before it touches
// any store, whoever calls it.
func TestOpenRefusesBadOptions(t *testing.T) {
	if _, err := Open(WithRoot("")); err == nil || !strings.Contains(err.Error(), "WithRoot: empty directory") {
		t.Errorf("Open(WithRoot(\"\")) = %v, want the option's error", err)
	}
}
