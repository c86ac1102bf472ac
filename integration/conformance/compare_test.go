package conformance

import (
	"reflect"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	f := &Entry{Type: "file", Mode: "0644", Size: 2, SHA256: "aa", Text: "a\n"}
	base := func() *Result {
		return &Result{DeltaFromBase: true, Platform: "linux/amd64", History: []string{"layer"},
			Config: Config{Env: []string{"PATH=/bin", "A=1"}, Cmd: []string{"/bin/sh"},
				Labels: map[string]string{"a": "1"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}},
			FS: map[string]*Entry{"/a": f, "/gone": nil}}
	}
	cases := []struct {
		name   string
		change func(r *Result)
		want   []string // Difference.What, sorted
		detail string   // in the first difference's detail
	}{
		{"same", func(*Result) {}, nil, ""},
		{"empty and absent are the same", func(r *Result) { r.Config.Entrypoint = []string{}; r.Leaked = []string{} }, nil, ""},
		{"history", func(r *Result) { r.History = []string{"empty"} }, []string{"history"}, `want ["layer"], got ["empty"]`},
		{"env value", func(r *Result) { r.Config.Env = []string{"PATH=/bin", "A=2"} }, []string{"config.Env[A]"}, `want "1", got "2"`},
		{"env order", func(r *Result) { r.Config.Env = []string{"A=1", "PATH=/bin"} }, []string{"config.Env"}, "order"},
		{"extra label", func(r *Result) { r.Config.Labels = map[string]string{"a": "1", "b": "2"} }, []string{"config.Labels[b]"}, "want absent"},
		{"port", func(r *Result) { r.Config.ExposedPorts = map[string]struct{}{"81/tcp": {}} },
			[]string{"config.ExposedPorts[80/tcp]", "config.ExposedPorts[81/tcp]"}, "want present, got absent"},
		{"cmd", func(r *Result) { r.Config.Cmd = nil }, []string{"config.Cmd"}, `want ["/bin/sh"], got null`},
		{"mode", func(r *Result) {
			g := *f
			g.Mode = "0600"
			r.FS["/a"] = &g
		}, []string{"fs /a"}, `mode want "0644" got "0600"`},
		{"not removed", func(r *Result) { delete(r.FS, "/gone") }, []string{"fs /gone"}, "want removed, got unchanged"},
		{"extra path", func(r *Result) { r.FS["/new"] = f }, []string{"fs /new"}, "want unchanged from the base"},
		{"leak", func(r *Result) { r.Leaked = []string{"s3cr3t"} }, []string{"leaked"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := base()
			c.change(got)
			diffs := Compare(base(), got)
			var whats []string
			for _, d := range diffs {
				whats = append(whats, d.What)
			}
			if !reflect.DeepEqual(whats, c.want) {
				t.Fatalf("differences %v, want %v (%v)", whats, c.want, diffs)
			}
			if c.detail != "" && !strings.Contains(diffs[0].Detail, c.detail) {
				t.Errorf("detail %q lacks %q", diffs[0].Detail, c.detail)
			}
		})
	}
}
