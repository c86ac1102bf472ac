package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stepexec/stepexec/integration/conformance"
)

// TestConformance builds every case of testdata/conformance with stepexec
// and compares the image with the case's golden expected.json (made by
// BuildKit, see scripts/conformance.sh): the flattened filesystem's changes
// from the Alpine base and the config fields. Differences listed for
// stepexec in KNOWN-DIFFERENCES.md are accepted; any other fails the case.
func TestConformance(t *testing.T) {
	corpus := filepath.Join(repo, "integration", "testdata", "conformance")
	cases, err := conformance.Load(corpus)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repo, "integration", "KNOWN-DIFFERENCES.md"))
	if err != nil {
		t.Fatal(err)
	}
	known, err := conformance.ParseKnown(data)
	if err != nil {
		t.Fatalf("KNOWN-DIFFERENCES.md: %v", err)
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		base := a.conformanceBase(t)
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				want, err := c.Expected()
				if err != nil {
					t.Fatalf("no golden (scripts/conformance.sh --update makes it): %v", err)
				}
				var diffs []conformance.Difference
				got, err := a.conformanceBuild(t, c, base)
				if err != nil {
					diffs = []conformance.Difference{{What: "build", Detail: err.Error()}}
				} else {
					diffs = conformance.Compare(want, got)
				}
				listed, unlisted := conformance.Classify(known, "stepexec", c.Name, diffs, nil)
				for _, d := range listed {
					t.Logf("listed in KNOWN-DIFFERENCES.md: %s", d)
				}
				for _, d := range unlisted {
					t.Errorf("differs from BuildKit: %s", d)
				}
			})
		}
	})
}

// conformanceBase is stepexec's build of `FROM alpine`, the base the
// goldens' filesystems are deltas from.
func (a *account) conformanceBase(t *testing.T) v1.Image {
	t.Helper()
	dir := a.writeContext(t, "conformance-base", "FROM alpine\n")
	out := filepath.Join(a.work, "conformance-base-oci")
	a.mustRun(t, "build", "--output", "type=oci,dest="+out, dir)
	img, err := conformance.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// conformanceBuild builds the case (after the cases it is built FROM) and
// describes the image; an error is a build that failed.
func (a *account) conformanceBuild(t *testing.T, c *conformance.Case, base v1.Image) (*conformance.Result, error) {
	t.Helper()
	for i, bf := range c.Spec.Before {
		dep, err := conformance.LoadCase(filepath.Join(filepath.Dir(c.Dir), bf.Dir))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.conformanceStep(t, dep, fmt.Sprintf("%s-before%d", c.Name, i), bf.Tag); err != nil {
			return nil, err
		}
	}
	out, err := a.conformanceStep(t, c, c.Name, "")
	if err != nil {
		return nil, err
	}
	img, err := conformance.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	r, err := conformance.Make(img, base, c.Spec.MustNotContain)
	if err != nil {
		t.Fatal(err)
	}
	return r, nil
}

// conformanceStep runs one `stepexec build` of a case prepared in the
// account's work directory; with tag it is only tagged, else exported.
func (a *account) conformanceStep(t *testing.T, c *conformance.Case, name, tag string) (string, error) {
	t.Helper()
	p, err := c.Prepare(filepath.Join(a.work, "conformance", name))
	if err != nil {
		t.Fatal(err)
	}
	a.chownTree(t, p.Root)
	port, stop, err := p.Serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	outDir := filepath.Join(a.work, "conformance-oci")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a.chownTree(t, outDir)
	out := filepath.Join(outDir, name)
	args := p.StepexecArgs(out, port)
	if tag != "" {
		args = p.StepexecArgs(out, port, tag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := a.command(ctx, args...)
	cmd.Env = p.Environ(cmd.Env)
	r := runCmd(t, cmd)
	if r.code != 0 {
		return "", &buildError{r}
	}
	return out, nil
}

// buildError is a failed build: its last lines say why.
type buildError struct{ r result }

func (e *buildError) Error() string {
	lines := strings.Split(strings.TrimSpace(e.r.stderr), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "stepexec build: exit " + strconv.Itoa(e.r.code) + ": " + strings.Join(lines, " | ")
}

// chownTree gives a tree prepared by the test (as root) to the account,
// keeping the modes: chown clears setuid and setgid bits.
func (a *account) chownTree(t *testing.T, dir string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, a.uid, a.gid); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		return os.Chmod(p, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
