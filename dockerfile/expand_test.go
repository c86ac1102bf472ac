package dockerfile

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func parseOne(t *testing.T, text string) (*Graph, Step) {
	t.Helper()
	g, err := Parse(strings.NewReader(text), "Dockerfile", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := g.Target.Steps
	return g, s[len(s)-1]
}

func TestExpand(t *testing.T) {
	env := NewVars([]string{"A=1", "B=two words", "P=/usr/bin", "EMPTY=", "FILE=archive.tar.gz"})
	cases := []struct {
		name, line string
		want       Command
	}{
		{"env both forms", `ENV X=$A Y="${B}" Z=\$A`, &Env{Pairs: []KeyValue{{"X", "1"}, {"Y", "two words"}, {"Z", "$A"}}}},
		{"env default forms", `ENV X=${NOPE:-dflt} Y=${A:+set} Z=${EMPTY:-e}`, &Env{Pairs: []KeyValue{{"X", "dflt"}, {"Y", "set"}, {"Z", "e"}}}},
		{"pattern removal", `ENV X=${FILE%.gz} Y=${FILE#*.} Z=${FILE%%.*}`, &Env{Pairs: []KeyValue{{"X", "archive.tar"}, {"Y", "tar.gz"}, {"Z", "archive"}}}},
		{"substitution", `ENV X=${P/bin/sbin}`, &Env{Pairs: []KeyValue{{"X", "/usr/sbin"}}}},
		{"label quotes", `LABEL "k $A"="v $B"`, &Label{Pairs: []KeyValue{{"k 1", "v two words"}}}},
		{"workdir", `WORKDIR $P/x`, &Workdir{Path: "/usr/bin/x"}},
		{"user", `USER ${A}:${A}`, &User{Spec: "1:1"}},
		{"expose splits words", `EXPOSE ${A}0 "8$A"/udp`, &Expose{Ports: []string{"81/udp", "10"}}}, // the parser sorts the words as written
		{"volume", `VOLUME $P /v`, &Volume{Paths: []string{"/usr/bin", "/v"}}},
		{"stopsignal", `STOPSIGNAL SIG${A}`, &StopSignal{Signal: "SIG1"}},
		{"run untouched", `RUN echo $A`, &Run{Shell: true, Script: "echo $A", Network: "default", Security: "sandbox"}},
		{"cmd untouched", `CMD ["$A"]`, &Cmd{Args: []string{"$A"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, step := parseOne(t, "FROM alpine\n"+c.line+"\n")
			got, err := g.Expander().Expand(step.Command, env)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := got.(*Run); ok {
				r.node = nil
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestExpandCopy(t *testing.T) {
	env := NewVars([]string{"D=/dst", "U=app", "E=val"})
	g, step := parseOne(t, "FROM alpine\nCOPY --chown=$U --chmod=0${M:-644} src/$U <<A <<'B' $D/\nraw $E \"q\"\nA\nkept $E\nB\n")
	got, err := g.Expander().Expand(step.Command, env)
	if err != nil {
		t.Fatal(err)
	}
	c := got.(*Copy)
	if c.Chown != "app" || c.Chmod != "0644" || c.Dest != "/dst/" || !reflect.DeepEqual(c.Sources, []string{"src/app"}) {
		t.Errorf("flags/paths: %+v", c)
	}
	want := []InlineFile{{Name: "A", Data: "raw val \"q\"\n", Expand: true}, {Name: "B", Data: "kept $E\n"}}
	if !reflect.DeepEqual(c.Inline, want) {
		t.Errorf("inline: got %+v want %+v", c.Inline, want)
	}
	if orig := step.Command.(*Copy); orig.Chown != "$U" || orig.Inline[0].Data != "raw $E \"q\"\n" {
		t.Errorf("Expand changed the parsed command: %+v", orig)
	}
}

func TestExpandMounts(t *testing.T) {
	env := NewVars([]string{"C=/cache", "ID=mine"})
	g, step := parseOne(t, "FROM alpine AS deps\nFROM alpine\nRUN --mount=type=cache,target=$C,id=${ID},mode=0750,uid=5 --mount=type=bind,from=deps,source=/x,target=/y,rw --mount=type=secret,id=s,env=TOK true\n")
	ms, err := g.Expander().Mounts(step.Command.(*Run), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("got %d mounts", len(ms))
	}
	c, b, s := ms[0], ms[1], ms[2]
	if c.Type != "cache" || c.Target != "/cache" || c.ID != "mine" || *c.Mode != 0o750 || *c.UID != 5 || c.ReadOnly {
		t.Errorf("cache mount: %+v", c)
	}
	if b.Type != "bind" || b.FromStage != g.Stages[0] || b.Source != "/x" || b.ReadOnly {
		t.Errorf("bind mount: %+v", b)
	}
	if s.Type != "secret" || s.ID != "s" || s.Env == nil || *s.Env != "TOK" || !s.ReadOnly {
		t.Errorf("secret mount: %+v", s)
	}
	if deps := g.Target.Deps(); len(deps) != 1 || deps[0] != g.Stages[0] {
		t.Errorf("mount from= is not a dependency: %v", deps)
	}
}

func TestTriggers(t *testing.T) {
	g, err := Parse(strings.NewReader("FROM alpine AS gen\nFROM base\nRUN own\n"), "Dockerfile", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := g.Target
	steps, err := g.Triggers(s, []string{"RUN echo from-base", "COPY --from=gen /x /y"})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || !steps[0].OnBuild || steps[0].Location.Line != 2 {
		t.Fatalf("steps: %+v", steps)
	}
	if c := steps[1].Command.(*Copy); c.FromStage != g.Stages[0] {
		t.Errorf("trigger's --from not resolved: %+v", c)
	}
	if n := g.Needed(); len(n) != 2 {
		t.Errorf("trigger dependency not needed: %v", n)
	}
	_, err = g.Triggers(s, []string{"RUN --security=insecure x", "BOGUS y"})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:2: ONBUILD trigger \"RUN --security=insecure x\"") || !strings.Contains(err.Error(), "BOGUS") {
		t.Errorf("bad triggers: %v", err)
	}
}

func TestVars(t *testing.T) {
	base := NewVars([]string{"A=1", "B=2", "A=3"})
	if got := base.Environ(); !reflect.DeepEqual(got, []string{"A=3", "B=2"}) {
		t.Errorf("NewVars: %v", got)
	}
	x := base.With("C", "c").With("A", "x")
	y := base.With("D", "d")
	if got := x.Environ(); !reflect.DeepEqual(got, []string{"A=x", "B=2", "C=c"}) {
		t.Errorf("x: %v", got)
	}
	if got := y.Environ(); !reflect.DeepEqual(got, []string{"A=3", "B=2", "D=d"}) {
		t.Errorf("branch y sees x's changes: %v", got)
	}
	if v, ok := x.Get("A"); !ok || v != "x" {
		t.Errorf("Get A = %q %v", v, ok)
	}
	if _, ok := y.Get("C"); ok {
		t.Error("y has C")
	}
	// Past the flattening depth, order and values still hold.
	v := (*Vars)(nil)
	for i := 0; i < 3*flattenDepth+5; i++ {
		v = v.With(fmt.Sprintf("K%d", i%100), fmt.Sprint(i))
	}
	if v.Len() != 100 {
		t.Errorf("len %d", v.Len())
	}
	if got, _ := v.Get("K7"); got != "107" {
		t.Errorf("K7 = %s", got)
	}
	if v.List()[0].Key != "K0" {
		t.Errorf("first key %s", v.List()[0].Key)
	}
}

// BenchmarkManyEnv is the cost of a stage with 10,000 ENV lines: expanding
// each against the variables so far and adding it.
func BenchmarkManyEnv(b *testing.B) {
	var df strings.Builder
	df.WriteString("FROM alpine\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&df, "ENV V%d=$V%d-x\n", i, i/2)
	}
	g, err := Parse(strings.NewReader(df.String()), "Dockerfile", ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ex := g.Expander()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		v := NewVars([]string{"PATH=/bin"})
		for _, st := range g.Target.Steps {
			c, err := ex.Expand(st.Command, v)
			if err != nil {
				b.Fatal(err)
			}
			for _, kv := range c.(*Env).Pairs {
				v = v.With(kv.Key, kv.Value)
			}
		}
		if v.Len() != 10001 {
			b.Fatal(v.Len())
		}
	}
}
