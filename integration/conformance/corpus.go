package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Files of a case directory that describe the case and are not part of
// its build context.
const (
	SpecFile     = "case.json"
	ExpectedFile = "expected.json"
	SetupFile    = "setup.sh"
)

// Case is one directory of the corpus: a Dockerfile, its context, an
// optional case.json and the golden expected.json.
type Case struct {
	Name string // the directory's name, "05-copy-chown"
	Dir  string
	Spec Spec
}

// Spec is case.json. Paths are relative to the case directory.
type Spec struct {
	// BuildArgs are "K=V", or "K" to pass K's value from Env as docker
	// build --build-arg K does.
	BuildArgs     []string `json:"build_args,omitempty"`
	BuildArgFiles []string `json:"build_arg_files,omitempty"` // lines K=V; # comments
	Target        string   `json:"target,omitempty"`
	Secrets       []Secret `json:"secrets,omitempty"`
	// Env is the environment of the builder's client (build args and
	// secrets taken from the environment).
	Env map[string]string `json:"env,omitempty"`
	// Context is the build context's directory; default the case's.
	Context string `json:"context,omitempty"`
	// Dockerfile is passed with -f; default CONTEXT/Dockerfile, without -f.
	Dockerfile string `json:"dockerfile,omitempty"`
	// ServeHTTP is a directory served on 127.0.0.1 during the build; its
	// port is passed as the build arg HTTP_PORT.
	ServeHTTP string `json:"serve_http,omitempty"`
	// Before are cases built first and tagged, for a FROM of this case.
	Before []Before `json:"before,omitempty"`
	// MustNotContain are strings no layer and no config may hold.
	MustNotContain []string `json:"must_not_contain,omitempty"`
	// Covers says what the case exercises, for people.
	Covers string `json:"covers,omitempty"`
}

// Secret is a --secret: from a file (Src) or from an Env variable.
type Secret struct {
	ID  string `json:"id"`
	Src string `json:"src,omitempty"`
	Env string `json:"env,omitempty"`
}

// Before names another case to build as Tag before this one.
type Before struct {
	Dir string `json:"dir"`
	Tag string `json:"tag"`
}

// Load reads every case under dir (directories holding a Dockerfile or a
// case.json), sorted by name. With names, only those (and no others).
func Load(dir string, names ...string) ([]*Case, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading corpus: %w", err)
	}
	want := map[string]bool{} // name → found
	for _, n := range names {
		want[filepath.Base(n)] = false
	}
	var out []*Case
	for _, e := range entries {
		if _, named := want[e.Name()]; !e.IsDir() || (len(names) > 0 && !named) {
			continue
		}
		c, err := LoadCase(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		want[e.Name()] = true
		out = append(out, c)
	}
	for n, found := range want {
		if !found {
			return nil, fmt.Errorf("no case %q in %s", n, dir)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// LoadCase reads one case directory.
func LoadCase(dir string) (*Case, error) {
	c := &Case{Name: filepath.Base(dir), Dir: dir}
	data, err := os.ReadFile(filepath.Join(dir, SpecFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Spec); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SpecFile), err)
		}
	}
	df := c.Spec.Dockerfile
	if df == "" {
		df = filepath.Join(c.Spec.Context, "Dockerfile")
	}
	if _, err := os.Stat(filepath.Join(dir, df)); err != nil {
		return nil, fmt.Errorf("case %s: %w", c.Name, err)
	}
	return c, nil
}

// Expected reads the case's golden result.
func (c *Case) Expected() (*Result, error) {
	data, err := os.ReadFile(filepath.Join(c.Dir, ExpectedFile))
	if err != nil {
		return nil, err
	}
	r, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(c.Dir, ExpectedFile), err)
	}
	return r, nil
}

// Prepared is a case copied into a scratch directory, ready to build.
type Prepared struct {
	*Case
	Root       string // the copy of the case directory
	Context    string
	Dockerfile string // absolute; "" when the builder should find CONTEXT/Dockerfile
}

// DockerfilePath is the Dockerfile the build reads.
func (p *Prepared) DockerfilePath() string {
	if p.Dockerfile != "" {
		return p.Dockerfile
	}
	return filepath.Join(p.Context, "Dockerfile")
}

// Prepare copies the case into dst (which must not exist) with the modes
// git cannot be trusted with made explicit (directories 0755, files 0644
// or 0755 when executable), then runs the case's setup.sh there for what
// git cannot store at all (other modes, empty directories, hardlinks,
// archives).
func (c *Case) Prepare(dst string) (*Prepared, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	if err := copyTree(c.Dir, dst); err != nil {
		return nil, fmt.Errorf("case %s: copying: %w", c.Name, err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, SetupFile)); err == nil {
		cmd := exec.Command("sh", "-eu", filepath.Join(c.Dir, SetupFile))
		cmd.Dir = dst
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("case %s: %s: %w\n%s", c.Name, SetupFile, err, out)
		}
	}
	own := *c // the builder may rewrite its copy's build args
	own.Spec.BuildArgs = append([]string(nil), c.Spec.BuildArgs...)
	p := &Prepared{Case: &own, Root: dst, Context: filepath.Join(dst, c.Spec.Context)}
	if c.Spec.Dockerfile != "" {
		p.Dockerfile = filepath.Join(dst, c.Spec.Dockerfile)
	}
	return p, nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == SpecFile || rel == ExpectedFile || rel == SetupFile {
			return nil
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case info.Mode().IsRegular():
			mode := fs.FileMode(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(p, to, mode)
		}
		return fmt.Errorf("%s: not a file, directory or symlink (make it in %s)", p, SetupFile)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // the umask must not decide
}

// BuildArgs resolves the case's build args to K=V pairs, in order: the
// build-arg files' first, then build_args (a later K wins, as with
// repeated --build-arg). extra are appended (HTTP_PORT).
func (p *Prepared) BuildArgs(extra ...string) ([]string, error) {
	var out []string
	for _, f := range p.Spec.BuildArgFiles {
		kvs, err := readArgFile(filepath.Join(p.Root, f))
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", p.Name, err)
		}
		out = append(out, kvs...)
	}
	for _, a := range p.Spec.BuildArgs {
		if strings.Contains(a, "=") {
			out = append(out, a)
			continue
		}
		v, ok := p.Spec.Env[a]
		if !ok {
			return nil, fmt.Errorf("case %s: build arg %s takes its value from env, which does not set it", p.Name, a)
		}
		out = append(out, a+"="+v)
	}
	return append(out, extra...), nil
}

// readArgFile reads a build-arg file as podman does: K=V lines, blank
// lines and # comments skipped.
func readArgFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			return nil, fmt.Errorf("%s: %q is not K=V", path, line)
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// Environ is the builder client's environment: base plus the case's Env.
func (p *Prepared) Environ(base []string) []string {
	env := append([]string(nil), base...)
	keys := make([]string, 0, len(p.Spec.Env))
	for k := range p.Spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.Spec.Env[k])
	}
	return env
}
