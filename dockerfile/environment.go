package dockerfile

import "strings"

// Environment is a stage's environment: the ordered KEY=VALUE list an image
// config holds, with an index by key, so that looking up and setting a
// variable cost O(1) and a Dockerfile of n ENV lines builds in O(n) rather
// than O(n²). It is what Plan.Expand expands against. When the list holds a
// key twice (an image can), the later entry is the one seen and set.
type Environment struct {
	list  []string
	index map[string]int // key → position in list of its last entry
}

// NewEnvironment indexes list, which the Environment then owns and updates.
func NewEnvironment(list []string) *Environment {
	e := &Environment{list: list, index: make(map[string]int, len(list))}
	for i, kv := range list {
		k, _, _ := strings.Cut(kv, "=")
		e.index[k] = i
	}
	return e
}

// Get returns key's value (shell.EnvGetter).
func (e *Environment) Get(key string) (string, bool) {
	if e == nil {
		return "", false
	}
	i, ok := e.index[key]
	if !ok {
		return "", false
	}
	_, v, _ := strings.Cut(e.list[i], "=")
	return v, true
}

// Keys returns the variables' names in order (shell.EnvGetter).
func (e *Environment) Keys() []string {
	if e == nil {
		return nil
	}
	keys := make([]string, 0, len(e.index))
	for i, kv := range e.list {
		k, _, _ := strings.Cut(kv, "=")
		if e.index[k] == i {
			keys = append(keys, k)
		}
	}
	return keys
}

// Set gives key a value, as docker's ENV does: a variable already set keeps
// its position, a new one goes last.
func (e *Environment) Set(key, value string) {
	kv := key + "=" + value
	if i, ok := e.index[key]; ok {
		e.list[i] = kv
		return
	}
	e.index[key] = len(e.list)
	e.list = append(e.list, kv)
}

// List returns the KEY=VALUE list, for the image config; it shares storage
// with the Environment.
func (e *Environment) List() []string { return e.list }
