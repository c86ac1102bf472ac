package dockerfile

import (
	"fmt"
	goruntime "runtime"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Platform is an OS and architecture, e.g. linux/amd64.
type Platform struct{ OS, Arch, Variant string }

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func goarch() string { return goruntime.GOARCH }

// CheckPlatform accepts the platforms that name BuildPlatform (e.g.
// "linux/amd64", "linux/amd64/v1", "amd64"); stepexec does not emulate other
// architectures, so anything else is an error saying so.
func CheckPlatform(p string) error {
	norm := strings.ToLower(strings.TrimSpace(p))
	want := BuildPlatform.OS + "/" + BuildPlatform.Arch
	switch norm {
	case want, want + "/v1", BuildPlatform.Arch, "local":
		return nil
	}
	if goarch() == "amd64" && (norm == "linux/x86_64" || norm == "x86_64") {
		return nil
	}
	return fmt.Errorf("platform %q is not supported: stepexec builds only for this machine's platform, %s (it does not emulate other architectures)", p, want)
}

// platformArgs are BuildKit's automatic platform arguments (defaultArgs in
// dockerfile2llb/platform.go), all for the build platform.
func platformArgs(overrides map[string]string) *Vars {
	p := BuildPlatform
	kvs := [][2]string{
		{"BUILDPLATFORM", p.String()},
		{"BUILDOS", p.OS},
		{"BUILDOSVERSION", ""},
		{"BUILDARCH", p.Arch},
		{"BUILDVARIANT", p.Variant},
		{"TARGETPLATFORM", p.String()},
		{"TARGETOS", p.OS},
		{"TARGETOSVERSION", ""},
		{"TARGETARCH", p.Arch},
		{"TARGETVARIANT", p.Variant},
	}
	var v *Vars = NewVars(nil)
	for _, kv := range kvs {
		val := kv[1]
		if o, ok := overrides[kv[0]]; ok {
			val = o
		}
		v = v.With(kv[0], val)
	}
	return v
}

// proxyArgs are the predefined build arguments a RUN sees without an ARG
// (when given with --build-arg), kept out of the image's history.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// IsProxyArg reports whether key is one of docker's predefined proxy
// arguments.
func IsProxyArg(key string) bool { return proxyArgs[key] }

// isPlatformArg reports whether key is an automatic platform argument.
func isPlatformArg(key string) bool {
	_, ok := platformArgs(nil).Get(key)
	return ok
}

// ProxyEnv returns the proxy build arguments given with --build-arg, as
// KEY=VALUE, sorted: what every RUN gets in its environment.
func (g *Graph) ProxyEnv() []string {
	var out []string
	for k, v := range g.BuildArgs {
		if proxyArgs[k] {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

// resolveMetaArgs computes the global scope as BuildKit's buildMetaArgs: a
// --build-arg value wins over the default, and a default may use earlier
// global arguments.
func (g *Graph) resolveMetaArgs(nodes []parsedNode, errs *errList) *Vars {
	v := platformArgs(g.BuildArgs)
	ex := g.Expander()
	for _, pn := range nodes {
		arg := pn.v.(*instructions.ArgCommand)
		for _, kv := range arg.Args {
			g.globalArgKeys = append(g.globalArgKeys, kv.Key)
			if val, ok := g.BuildArgs[kv.Key]; ok {
				v = v.With(kv.Key, val)
				continue
			}
			if kv.Value == nil {
				continue
			}
			res, err := ex.Word(*kv.Value, v)
			if err != nil {
				errs.add(pn.loc, fmt.Errorf("ARG %s: %w", kv.Key, err))
				continue
			}
			v = v.With(kv.Key, res)
		}
	}
	return v
}

// declaredArgs returns every ARG name of the global scope and of the
// needed stages.
func (g *Graph) declaredArgs(metaKeys []string) map[string]bool {
	out := map[string]bool{}
	for _, k := range metaKeys {
		out[k] = true
	}
	for _, s := range g.Needed() {
		for _, st := range s.Steps {
			if a, ok := st.Command.(*Arg); ok {
				for _, d := range a.Args {
					out[d.Key] = true
				}
			}
		}
	}
	return out
}

// warnUnusedArgs warns of --build-arg values no ARG declares, as docker
// does ("[Warning] One or more build-args [X] were not consumed").
func (g *Graph) warnUnusedArgs() {
	declared := g.declaredArgs(g.globalArgKeys)
	var unused []string
	for k := range g.BuildArgs {
		if !declared[k] && !proxyArgs[k] && !isPlatformArg(k) {
			unused = append(unused, k)
		}
	}
	if len(unused) == 0 {
		return
	}
	sort.Strings(unused)
	g.Warnings = append(g.Warnings, fmt.Sprintf("one or more build-args %v were not consumed", unused))
}

// expandFrom expands a FROM line's word with the global scope only, as
// BuildKit does (a stage's own ARGs come after its FROM).
func (g *Graph) expandFrom(word string) (string, error) {
	return g.Expander().Word(word, g.MetaArgs)
}

var _ shell.EnvGetter = (*Vars)(nil)
