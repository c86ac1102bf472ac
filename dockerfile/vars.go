package dockerfile

import "strings"

// Vars is an immutable, ordered set of variables, as a stage's ENV and ARG
// scopes are. With returns a new Vars and leaves the receiver unchanged, so
// two stages built FROM one stage never see each other's changes. A key set
// again keeps its first position (docker replaces an ENV in place). Keys
// are case-sensitive, as on Linux. The zero value (and nil) is empty.
//
// It is a chain of one-entry overlays over a flattened level, flattened
// again every flattenDepth additions: n additions copy O(n²/flattenDepth)
// entries instead of O(n²), and a lookup reads at most flattenDepth
// overlays and one map. It implements shell.EnvGetter.
type Vars struct {
	parent     *Vars
	key, value string // the entry an overlay adds
	depth      int    // overlays above the flattened level

	// Set only on a flattened level (parent == nil).
	index map[string]int
	order []KeyValue
}

const flattenDepth = 64

// NewVars returns the variables of KEY=VALUE entries (later ones win; an
// entry without "=" is a key with an empty value).
func NewVars(env []string) *Vars {
	v := &Vars{index: make(map[string]int, len(env))}
	for _, e := range env {
		k, val, _ := strings.Cut(e, "=")
		v.setFlat(k, val)
	}
	return v
}

func (v *Vars) setFlat(k, val string) {
	if i, ok := v.index[k]; ok {
		v.order[i].Value = val
		return
	}
	v.index[k] = len(v.order)
	v.order = append(v.order, KeyValue{Key: k, Value: val})
}

// With returns v plus k=val.
func (v *Vars) With(k, val string) *Vars {
	if v == nil {
		v = &Vars{}
	}
	n := &Vars{parent: v, key: k, value: val, depth: v.depth + 1}
	if n.depth >= flattenDepth {
		return n.flatten()
	}
	return n
}

// Get returns k's value (shell.EnvGetter).
func (v *Vars) Get(k string) (string, bool) {
	for l := v; l != nil; l = l.parent {
		if l.parent == nil {
			i, ok := l.index[k]
			if !ok {
				return "", false
			}
			return l.order[i].Value, true
		}
		if l.key == k {
			return l.value, true
		}
	}
	return "", false
}

// Keys returns the keys in order (shell.EnvGetter).
func (v *Vars) Keys() []string {
	kvs := v.List()
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	return keys
}

// Len is the number of variables.
func (v *Vars) Len() int { return len(v.List()) }

// List returns the variables in order.
func (v *Vars) List() []KeyValue {
	if v == nil {
		return nil
	}
	return v.flatten().order
}

// Environ returns the variables as KEY=VALUE entries, in order.
func (v *Vars) Environ() []string {
	kvs := v.List()
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key + "=" + kv.Value
	}
	return out
}

// flatten returns a flattened level with v's variables.
func (v *Vars) flatten() *Vars {
	if v.parent == nil && v.index != nil {
		return v
	}
	var overlays []*Vars
	base := v
	for ; base != nil && base.parent != nil; base = base.parent {
		overlays = append(overlays, base)
	}
	n := 0
	if base != nil {
		n = len(base.order)
	}
	f := &Vars{index: make(map[string]int, n+len(overlays)), order: make([]KeyValue, 0, n+len(overlays))}
	if base != nil {
		f.order = append(f.order, base.order...)
		for k, i := range base.index {
			f.index[k] = i
		}
	}
	for i := len(overlays) - 1; i >= 0; i-- {
		f.setFlat(overlays[i].key, overlays[i].value)
	}
	return f
}
