package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Result is what a case's build produced, in the form compared between
// builders and kept as the case's expected.json.
type Result struct {
	// DeltaFromBase says FS holds only the changes from the builder's own
	// Alpine base image (the image starts with the base's layers); else FS is
	// the whole tree (FROM scratch).
	DeltaFromBase bool   `json:"delta_from_base"`
	Platform      string `json:"platform"`
	Config        Config `json:"config"`
	// History has one word per history entry the build added to the base's:
	// "layer", or "empty" for an entry without a layer.
	History []string `json:"history"`
	// Leaked lists the case's must_not_contain strings found in the config
	// or in any layer: a secret or proxy setting that reached the image.
	Leaked []string `json:"leaked,omitempty"`
	// OverlayXattrs lists the paths carrying overlayfs's private xattrs
	// (trusted.overlay.*, user.overlay.*): a builder's snapshotter leaking
	// into the image. They are left out of FS so that each shows once here.
	OverlayXattrs []string `json:"overlay_xattrs,omitempty"`
	// FS maps a path to its entry; null means the build removed the path.
	FS map[string]*Entry `json:"fs"`
}

// Config holds the image config fields compared. Empty and absent are the
// same (omitempty); Author is the config's top-level "author".
type Config struct {
	Author       string              `json:"Author,omitempty"`
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Healthcheck  *Healthcheck        `json:"Healthcheck,omitempty"`
	OnBuild      []string            `json:"OnBuild,omitempty"`
	Shell        []string            `json:"Shell,omitempty"`
}

// Healthcheck is Docker's config field; durations are nanoseconds.
type Healthcheck struct {
	Test          []string `json:"Test,omitempty"`
	Interval      int64    `json:"Interval,omitempty"`
	Timeout       int64    `json:"Timeout,omitempty"`
	StartPeriod   int64    `json:"StartPeriod,omitempty"`
	StartInterval int64    `json:"StartInterval,omitempty"`
	Retries       int      `json:"Retries,omitempty"`
}

// rawImage is the part of an image config file read here; it accepts both
// OCI and Docker configs (Docker's extra fields sit in the same object).
type rawImage struct {
	Author       string `json:"author"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant"`
	Config       Config `json:"config"`
	History      []struct {
		EmptyLayer bool `json:"empty_layer"`
	} `json:"history"`
}

// Make describes img. base is the builder's own build of `FROM alpine`:
// when img starts with base's layers, the filesystem is given as a delta
// from base and base's history entries are skipped. mustNotContain are
// strings searched for in the config and in every layer.
func Make(img, base v1.Image, mustNotContain []string) (*Result, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var cfg rawImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	fromBase, baseHistory, err := startsWith(img, base)
	if err != nil {
		return nil, err
	}
	r := &Result{DeltaFromBase: fromBase, Platform: cfg.OS + "/" + cfg.Architecture, Config: cfg.Config}
	if cfg.Variant != "" {
		r.Platform += "/" + cfg.Variant
	}
	r.Config.Author = cfg.Author
	if baseHistory > len(cfg.History) {
		return nil, fmt.Errorf("image has %d history entries, fewer than its base's %d", len(cfg.History), baseHistory)
	}
	r.History = []string{}
	for _, h := range cfg.History[baseHistory:] {
		r.History = append(r.History, map[bool]string{true: "empty", false: "layer"}[h.EmptyLayer])
	}
	got, err := Flatten(img)
	if err != nil {
		return nil, err
	}
	r.OverlayXattrs = dropOverlayXattrs(got)
	var before FS
	if fromBase {
		if before, err = Flatten(base); err != nil {
			return nil, fmt.Errorf("base: %w", err)
		}
		dropOverlayXattrs(before)
	}
	r.FS = Delta(before, got)
	if r.Leaked, err = leaks(img, raw, mustNotContain); err != nil {
		return nil, err
	}
	return r, nil
}

// dropOverlayXattrs removes overlayfs's own xattrs from fs and returns the
// paths that had them, sorted.
func dropOverlayXattrs(fs FS) []string {
	var paths []string
	for p, e := range fs {
		found := false
		for k := range e.Xattrs {
			if strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
				delete(e.Xattrs, k)
				found = true
			}
		}
		if found {
			if len(e.Xattrs) == 0 {
				e.Xattrs = nil
			}
			fs[p] = e
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

// startsWith reports whether img's layers begin with all of base's, and
// then how many history entries base has.
func startsWith(img, base v1.Image) (bool, int, error) {
	if base == nil {
		return false, 0, nil
	}
	mine, err := diffIDs(img)
	if err != nil {
		return false, 0, err
	}
	theirs, err := diffIDs(base)
	if err != nil {
		return false, 0, fmt.Errorf("base: %w", err)
	}
	if len(theirs) == 0 || len(mine) < len(theirs) || !slices.Equal(mine[:len(theirs)], theirs) {
		return false, 0, nil
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return false, 0, fmt.Errorf("base config: %w", err)
	}
	return true, len(cf.History), nil
}

func diffIDs(img v1.Image) ([]v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return cf.RootFS.DiffIDs, nil
}

// Delta lists what changed from base to got: added or changed entries,
// and nil for removed paths. With a nil base it is all of got.
func Delta(base, got FS) map[string]*Entry {
	out := map[string]*Entry{}
	for p, e := range got {
		if old, ok := base[p]; ok && reflect.DeepEqual(old, e) {
			continue
		}
		e := e
		out[p] = &e
	}
	for p := range base {
		if _, ok := got[p]; !ok {
			out[p] = nil
		}
	}
	return out
}

// leaks returns the needles found in the config or any layer's tar stream.
func leaks(img v1.Image, config []byte, needles []string) ([]string, error) {
	if len(needles) == 0 {
		return nil, nil
	}
	found := map[string]bool{}
	for _, n := range needles {
		if bytes.Contains(config, []byte(n)) {
			found[n] = true
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		err = scan(rc, needles, found)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	var out []string
	for _, n := range needles {
		if found[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// scan marks the needles that occur in r, including across read boundaries.
func scan(r io.Reader, needles []string, found map[string]bool) error {
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	buf := make([]byte, 0, 1<<16+longest)
	chunk := make([]byte, 1<<16)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for _, nd := range needles {
			if bytes.Contains(buf, []byte(nd)) {
				found[nd] = true
			}
		}
		if keep := longest - 1; len(buf) > keep {
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Encode writes r as indented JSON with one line per filesystem entry, so
// that goldens read well and diff line by line.
func Encode(r *Result) ([]byte, error) {
	head := *r
	head.FS = nil
	top, err := marshal(struct {
		Result
		FS *struct{} `json:"fs,omitempty"`
	}{Result: head}, "  ")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(top[:len(top)-2]) // drop "\n}"
	b.WriteString(",\n  \"fs\": {")
	paths := make([]string, 0, len(r.FS))
	for p := range r.FS {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i, p := range paths {
		k, _ := marshal(p, "")
		v, err := marshal(r.FS[p], "")
		if err != nil {
			return nil, err
		}
		sep := ","
		if i == len(paths)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "\n    %s: %s%s", k, v, sep)
	}
	if len(paths) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes(), nil
}

// marshal is json.Marshal(Indent) without HTML escapes (< stays <) and
// without the encoder's final newline.
func marshal(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Decode reads what Encode wrote.
func Decode(data []byte) (*Result, error) {
	var r Result
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}
