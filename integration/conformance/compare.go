package conformance

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Difference is one way a result differs from the expected one. What names
// the place, in the form KNOWN-DIFFERENCES.md lists: "fs /etc/passwd",
// "config.Env[PATH]", "config.Cmd", "history", "build".
type Difference struct {
	What   string
	Detail string // "want X, got Y", or the fields of an entry that differ
}

func (d Difference) String() string { return d.What + ": " + d.Detail }

// Compare lists how got differs from want, sorted by What.
func Compare(want, got *Result) []Difference {
	var out []Difference
	add := func(what string, w, g any) {
		if !reflect.DeepEqual(blankToNil(w), blankToNil(g)) {
			out = append(out, Difference{what, fmt.Sprintf("want %s, got %s", show(w), show(g))})
		}
	}
	add("delta_from_base", want.DeltaFromBase, got.DeltaFromBase)
	add("platform", want.Platform, got.Platform)
	add("history", want.History, got.History)
	add("leaked", want.Leaked, got.Leaked)
	add("overlay_xattrs", want.OverlayXattrs, got.OverlayXattrs)
	out = append(out, compareConfig(want.Config, got.Config)...)
	out = append(out, compareFS(want.FS, got.FS)...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}

// compareConfig compares field by field; the keyed fields (Env, Labels,
// ExposedPorts, Volumes) key by key, so that one extra label is one
// difference of its own.
func compareConfig(want, got Config) []Difference {
	var out []Difference
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := 0; i < wv.NumField(); i++ {
		name := wv.Type().Field(i).Name
		w, g := wv.Field(i).Interface(), gv.Field(i).Interface()
		switch name {
		case "Env":
			byName := compareKeyed("config.Env", envMap(want.Env), envMap(got.Env))
			out = append(out, byName...)
			if len(byName) == 0 && !reflect.DeepEqual(blankToNil(want.Env), blankToNil(got.Env)) {
				out = append(out, Difference{"config.Env", fmt.Sprintf("order: want %s, got %s", show(want.Env), show(got.Env))})
			}
		case "Labels":
			out = append(out, compareKeyed("config.Labels", want.Labels, got.Labels)...)
		case "ExposedPorts", "Volumes":
			out = append(out, compareSet("config."+name, w.(map[string]struct{}), g.(map[string]struct{}))...)
		default:
			if !reflect.DeepEqual(blankToNil(w), blankToNil(g)) {
				out = append(out, Difference{"config." + name, fmt.Sprintf("want %s, got %s", show(w), show(g))})
			}
		}
	}
	return out
}

func compareKeyed(what string, want, got map[string]string) []Difference {
	var out []Difference
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, Difference{what + "[" + k + "]", fmt.Sprintf("want %q, got absent", w)})
		case g != w:
			out = append(out, Difference{what + "[" + k + "]", fmt.Sprintf("want %q, got %q", w, g)})
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, Difference{what + "[" + k + "]", fmt.Sprintf("want absent, got %q", g)})
		}
	}
	return out
}

func compareFS(want, got map[string]*Entry) []Difference {
	var out []Difference
	seen := map[string]bool{}
	for p, w := range want {
		seen[p] = true
		g, ok := got[p]
		if !ok {
			// Absent from a delta means "as in the base".
			out = append(out, Difference{"fs " + p, "want " + describe(w) + ", got unchanged from the base"})
			continue
		}
		if d := entryDiff(w, g); d != "" {
			out = append(out, Difference{"fs " + p, d})
		}
	}
	for p, g := range got {
		if !seen[p] {
			out = append(out, Difference{"fs " + p, "want unchanged from the base, got " + describe(g)})
		}
	}
	return out
}

// entryDiff names the fields of two entries that differ.
func entryDiff(want, got *Entry) string {
	if want == nil || got == nil {
		if want == got {
			return ""
		}
		return "want " + describe(want) + ", got " + describe(got)
	}
	var parts []string
	wv, gv := reflect.ValueOf(*want), reflect.ValueOf(*got)
	for i := 0; i < wv.NumField(); i++ {
		w, g := wv.Field(i).Interface(), gv.Field(i).Interface()
		if !reflect.DeepEqual(blankToNil(w), blankToNil(g)) {
			tag := strings.Split(wv.Type().Field(i).Tag.Get("json"), ",")[0]
			parts = append(parts, fmt.Sprintf("%s want %s got %s", tag, show(w), show(g)))
		}
	}
	return strings.Join(parts, "; ")
}

func describe(e *Entry) string {
	if e == nil {
		return "removed"
	}
	return show(e)
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// blankToNil maps the zero-length values of a field to nil, so that an absent
// field and an empty one compare equal, as omitempty writes them.
func blankToNil(v any) any {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		if rv.Len() == 0 {
			return nil
		}
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
	}
	return v
}

// envMap keys Env by variable name; a repeated name keeps its last value,
// as a process would see it.
func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func compareSet(what string, want, got map[string]struct{}) []Difference {
	var out []Difference
	for k := range want {
		if _, ok := got[k]; !ok {
			out = append(out, Difference{what + "[" + k + "]", "want present, got absent"})
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, Difference{what + "[" + k + "]", "want absent, got present"})
		}
	}
	return out
}
