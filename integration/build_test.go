package integration

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// forEachAccount runs f as a subtest for every account.
func forEachAccount(t *testing.T, f func(t *testing.T, a *account)) {
	for _, a := range accounts(t) {
		t.Run(a.name, func(t *testing.T) { f(t, a) })
	}
}

func TestImportNamesAndDeterministicLayer(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		out := a.mustRun(t, "images").stdout
		for _, tag := range []string{"3.20.3", "3.20", "latest"} {
			if !containsLine(out, "localhost/alpine", tag) {
				t.Errorf("images does not list localhost/alpine:%s:\n%s", tag, out)
			}
		}
		first := a.inspect(t, "alpine")
		a.importAlpine(t)
		second := a.inspect(t, "alpine:3.20")
		if len(first.RootFS.DiffIDs) != 1 || first.RootFS.DiffIDs[0] != second.RootFS.DiffIDs[0] {
			t.Errorf("importing twice gave different layers: %v vs %v", first.RootFS.DiffIDs, second.RootFS.DiffIDs)
		}
		layers := a.storeLayers(t)
		if len(layers) != 1 || "sha256:"+layers[0] != first.RootFS.DiffIDs[0].String() {
			t.Errorf("want one layer whose ID is its diffID %s, store has %v", first.RootFS.DiffIDs[0], layers)
		}
	})
}

// layerCase is one RUN and the exact layer it must make.
type layerCase struct {
	run   string
	want  []string // "path" or "path uid:gid" for entries whose owner matters
	exact bool     // the layer holds exactly want (else at least)
}

func TestBuildLayersConfigAndExports(t *testing.T) {
	cases := []layerCase{
		{run: `echo hi > /new-file`, want: []string{"new-file"}, exact: true},
		{run: `rm /etc/motd`, want: []string{"etc/", "etc/.wh.motd"}, exact: true},
		{run: `mkdir -p /opq/old && touch /opq/old/f`, want: []string{"opq/", "opq/old/", "opq/old/f"}, exact: true},
		{run: `rm -rf /opq && mkdir /opq && touch /opq/new`, want: []string{"opq/", "opq/.wh..wh..opq", "opq/new"}, exact: true},
		{run: `adduser -D bob && chown -R bob /home/bob`, want: []string{"home/bob/ 1000:1000", "etc/passwd 0:0"}},
	}
	var df strings.Builder
	df.WriteString("FROM alpine\n")
	for _, c := range cases {
		fmt.Fprintf(&df, "RUN %s\n", c.run)
	}
	df.WriteString(`ENV A=1 B="two words"
ENV C=${A}-x
WORKDIR /app
LABEL org.example.kind=test "org.example.with space"=yes
RUN test "$(pwd)" = /app && test "$C" = 1-x
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
`)
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		ctxDir := a.writeContext(t, "layers", df.String())
		dest := filepath.Join(a.work, "oci-layers")
		r := a.mustRun(t, "build", "--progress=plain", "-t", "layers", "--output", "type=oci,dest="+dest, ctxDir)
		for _, want := range []string{"sandbox created", "command ran: exit code 0", "diff: 1 file changed", "layer sha256:", "sandbox removed", "naming to localhost/layers:latest"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("plain progress lacks %q:\n%s", want, r.stderr)
			}
		}

		cfg := a.inspect(t, "layers")
		if got := strings.Join(cfg.Config.Entrypoint, "|"); got != "/bin/sh|-c" {
			t.Errorf("Entrypoint = %q", got)
		}
		if got := strings.Join(cfg.Config.Cmd, "|"); got != "echo hi" {
			t.Errorf("Cmd = %q", got)
		}
		if cfg.Config.WorkingDir != "/app" {
			t.Errorf("WorkingDir = %q", cfg.Config.WorkingDir)
		}
		env := strings.Join(cfg.Config.Env, "\n")
		for _, want := range []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=two words", "C=1-x"} {
			if !strings.Contains(env+"\n", want+"\n") {
				t.Errorf("Env lacks %q: %v", want, cfg.Config.Env)
			}
		}
		if cfg.Config.Labels["org.example.kind"] != "test" || cfg.Config.Labels["org.example.with space"] != "yes" {
			t.Errorf("Labels = %v", cfg.Config.Labels)
		}
		// History: the import, then one entry per instruction; layers only for
		// steps that changed files.
		var created []string
		nonEmpty := 0
		for _, h := range cfg.History {
			created = append(created, h.CreatedBy)
			if !h.EmptyLayer {
				nonEmpty++
			}
		}
		if nonEmpty != len(cfg.RootFS.DiffIDs) {
			t.Errorf("history has %d non-empty entries for %d layers: %v", nonEmpty, len(cfg.RootFS.DiffIDs), created)
		}
		// As BuildKit writes them: ENV with its values expanded.
		wantHistory := []string{"RUN /bin/sh -c " + cases[0].run, "ENV A=1 B=two words", "WORKDIR /app", `CMD ["echo hi"]`}
		for _, w := range wantHistory {
			if !containsString(created, w) {
				t.Errorf("history lacks created_by %q: %q", w, created)
			}
		}

		// The layers, read back from the OCI export.
		img := readOCI(t, dest)
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		// base + one per case + WORKDIR /app + the last RUN, which only reads:
		// an empty layer, as BuildKit commits one for every RUN.
		if len(layers) != 1+len(cases)+2 {
			t.Fatalf("OCI image has %d layers, want %d", len(layers), 1+len(cases)+2)
		}
		if got := layerEntries(t, layers[len(layers)-1]); len(got) != 0 {
			t.Errorf("the read-only RUN's layer holds %v, want nothing", got)
		}
		for i, c := range cases {
			entries := layerEntries(t, layers[i+1])
			checkLayer(t, c, entries)
		}
		if got := layerEntries(t, layers[len(cases)+1]); len(got) != 1 || got[0].name != "app/" {
			t.Errorf("WORKDIR layer = %v, want just app/", got)
		}
		ociCfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if ociCfg.Config.WorkingDir != "/app" {
			t.Errorf("exported config WorkingDir = %q", ociCfg.Config.WorkingDir)
		}
		digest, _ := img.ConfigName()
		if id := strings.TrimSpace(a.mustRun(t, "images", "-q").stdout); !strings.Contains(id, digest.Hex[:12]) {
			t.Errorf("exported config %s is not the stored image (images -q: %s)", digest, id)
		}

		// Other tools accept what we made.
		skopeoInspect(t, a, dest)
		podmanLists(t, a, "localhost/layers")
	})
}

func TestSeedExampleAndArchiveOutput(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		ctxDir := filepath.Join(a.work, "hello")
		copyTree(t, filepath.Join(repo, "examples", "hello"), ctxDir, a)
		archive := filepath.Join(a.work, "hello.tar")
		a.mustRun(t, "build", "-t", "hello", "--output", "type=oci,dest="+archive, ctxDir)
		cfg := a.inspect(t, "hello")
		if got := strings.Join(cfg.Config.Cmd, " "); got != "cat /hello" {
			t.Errorf("Cmd = %q", got)
		}
		// The archive is an OCI layout: unpack and read it back.
		dir := filepath.Join(a.work, "hello-unpacked")
		os.MkdirAll(dir, 0o755)
		if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
			t.Fatalf("untar %s: %v %s", archive, err, out)
		}
		img := readOCI(t, dir)
		layers, _ := img.Layers()
		if len(layers) != 2 {
			t.Fatalf("hello has %d layers, want 2", len(layers))
		}
		found := false
		for _, e := range layerEntries(t, layers[1]) {
			if e.name == "hello" && strings.Contains(e.content, "hello from a rootless") {
				found = true
			}
		}
		if !found {
			t.Errorf("the RUN layer lacks /hello")
		}
		if _, err := exec.LookPath("umoci"); err == nil {
			bundle := filepath.Join(a.work, "bundle")
			cmd := exec.Command("umoci", "unpack", "--rootless", "--image", dir+":latest", bundle)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("umoci unpack: %v\n%s", err, out)
			} else if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "hello")); err != nil || !strings.Contains(string(b), "hello from") {
				t.Errorf("umoci's unpacked rootfs lacks /hello: %v", err)
			}
		}
	})
}

func TestFailingRunLeavesNothing(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		ctxDir := a.writeContext(t, "fail", "FROM alpine\nRUN echo made > /made\n\nRUN echo this-is-the-output && exit 3\nCMD [\"true\"]\n")
		dest := filepath.Join(a.work, "fail-oci")
		r := a.run(t, "build", "--progress=plain", "-t", "fail", "--output", "type=oci,dest="+dest, ctxDir)
		if r.code == 0 {
			t.Fatalf("a failing RUN built: %s", r)
		}
		for _, want := range []string{"Dockerfile:4", "exit code 3", "echo this-is-the-output && exit 3", "this-is-the-output"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		if fileExists(dest) {
			t.Errorf("a failed build left its output %s", dest)
		}
		if out := a.mustRun(t, "images").stdout; strings.Contains(out, "localhost/fail") {
			t.Errorf("a failed build left an image:\n%s", out)
		}
		a.assertNothingLeft(t, before)
	})
}

func TestBadDockerfilesFailBeforeAnyStep(t *testing.T) {
	cases := []struct {
		name, dockerfile, want string
		args                   []string
	}{
		{name: "missing-source", dockerfile: "FROM alpine\nRUN echo one\nCOPY nosuchfile /x\n", want: "Dockerfile:3: COPY nosuchfile /x: "},
		{name: "outside-context", dockerfile: "FROM alpine\nRUN echo one\nCOPY ../secret /x\n", want: "Dockerfile:3: COPY ../secret /x: source ../secret is outside the build context"},
		{name: "bad-from", dockerfile: "FROM alpine AS a\nRUN echo one\nCOPY --from=b /x /x\nFROM alpine AS b\n", want: `Dockerfile:3: COPY --from=b: stage "b" is defined after this one`},
		{name: "self-from", dockerfile: "FROM alpine AS a\nRUN echo one\nCOPY --from=a /x /x\n", want: "Dockerfile:3: COPY --from=a: a stage cannot use itself"},
		{name: "unknown-target", dockerfile: "FROM alpine AS a\nRUN echo one\n", want: `target stage "nope" not found`, args: []string{"--target", "nope"}},
		{name: "bad-chmod", dockerfile: "FROM alpine\nRUN echo one\nARG M=99\nCOPY --chmod=$M a /a\n", want: "Dockerfile:4: COPY --chmod=$M a /a: --chmod=99: invalid mode"},
		{name: "bad-chown", dockerfile: "FROM alpine\nRUN echo one\nCOPY --chown=a:b:c x /\n", want: "Dockerfile:3: COPY --chown=a:b:c"},
		{name: "unknown-flag", dockerfile: "FROM alpine\nRUN echo one\nCOPY --nope x /\n", want: "Dockerfile:3: unknown flag: --nope"},
		{name: "several", dockerfile: "FROM alpine\nRUN echo one\nCOPY missing1 /\nEXPOSE notaport\nRUN --mount=type=secret,id=s,required true\n",
			want: "Dockerfile:5: RUN --mount=type=secret,id=s,required true: --mount=type=secret: secret \"s\" is required"},
		{name: "unknown", dockerfile: "FROM alpine\nRUN echo one\nFROBNICATE x\n", want: "Dockerfile:3"},
		{name: "no-from", dockerfile: "RUN echo one\n", want: "Dockerfile"},
		{name: "missing-base", dockerfile: "FROM nosuchimage:1\nRUN echo one\n", want: "Dockerfile:1"},
		{name: "bad-output", dockerfile: "FROM alpine\nRUN echo one\n", want: "directory /proc/nope does not exist",
			args: []string{"--output", "type=oci,dest=/proc/nope/x"}},
		{name: "output-under-file", dockerfile: "FROM alpine\nRUN echo one\n", want: "/etc/hostname is a file, not a directory",
			args: []string{"--output", "type=oci,dest=/etc/hostname/sub"}},
		{name: "nul", dockerfile: "FROM alpine\nRUN echo one\nRUN echo \x00two\n", want: "Dockerfile:3: NUL byte at column 10"},
		{name: "long-line", dockerfile: "FROM alpine\nRUN a\nRUN b\nRUN c\nLABEL x=" + strings.Repeat("y", 70000) + "\nRUN d\n",
			want: "Dockerfile:5: line longer than 65535 bytes"},
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		for _, c := range cases {
			ctxDir := a.writeContext(t, "bad-"+c.name, c.dockerfile)
			r := a.run(t, append(append([]string{"build", "--progress=plain"}, c.args...), ctxDir)...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%s: want a failure naming %q, got %s", c.name, c.want, r)
			}
			if strings.Contains(r.stderr, "sandbox created") {
				t.Errorf("%s: a step ran before the error was found:\n%s", c.name, r.stderr)
			}
		}
		a.assertNothingLeft(t, before)
	})
}

func TestInterruptedRunLeavesNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			forEachAccount(t, func(t *testing.T, a *account) {
				a.importAlpine(t)
				before := a.storeLayers(t)
				ctxDir := a.writeContext(t, "interrupt", "FROM alpine\nRUN echo made > /made\nRUN sleep 1000 & sleep 1000; echo "+stepMarker+"\n")
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := a.command(ctx, "build", "--progress=plain", ctxDir)
				pr, pw := io.Pipe()
				var stderr strings.Builder
				cmd.Stderr = pw
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				started := make(chan struct{})
				go func() {
					buf := make([]byte, 4096)
					once := false
					for {
						n, err := pr.Read(buf)
						stderr.Write(buf[:n])
						if !once && strings.Count(stderr.String(), "sandbox created") >= 2 {
							once = true
							close(started)
						}
						if err != nil {
							return
						}
					}
				}()
				select {
				case <-started:
				case <-time.After(time.Minute):
					cmd.Process.Kill()
					t.Fatalf("the sleeping step never started:\n%s", stderr.String())
				}
				sent := time.Now()
				cmd.Process.Signal(sig)
				err := cmd.Wait()
				pw.Close()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				if want := 128 + int(sig); code != want {
					t.Errorf("exit code %d after %v, want %d\n%s", code, sig, want, stderr.String())
				}
				if took := time.Since(sent); took > 10*time.Second {
					t.Errorf("took %v to stop after %v", took, sig)
				}
				a.assertNothingLeft(t, before)
				// The step that completed before the signal stays cached.
				a.writeContext(t, "interrupt", "FROM alpine\nRUN echo made > /made\nRUN true\n")
				if s := a.build(t, ctxDir); !slices.Equal(s.cached, []string{"RUN echo made > /made"}) {
					t.Errorf("after %v the completed step is not CACHED: cached %q, ran %q", sig, s.cached, s.ran)
				}
			})
		})
	}
}

// inspect returns the image config `stepexec inspect` prints.
func (a *account) inspect(t *testing.T, ref string) ocispec.Image {
	t.Helper()
	var cfg ocispec.Image
	out := a.mustRun(t, "inspect", ref).stdout
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("inspect %s printed no config: %v\n%s", ref, err, out)
	}
	return cfg
}

func readOCI(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading OCI layout %s: %v", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("OCI layout %s: want one manifest, got %v (%v)", dir, m, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type tarEntry struct {
	name     string
	uid, gid int
	content  string
}

func layerEntries(t *testing.T, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := tarEntry{name: h.Name, uid: h.Uid, gid: h.Gid}
		if h.Typeflag == tar.TypeReg && h.Size < 4096 {
			b, _ := io.ReadAll(tr)
			e.content = string(b)
		}
		out = append(out, e)
	}
	return out
}

func checkLayer(t *testing.T, c layerCase, entries []tarEntry) {
	t.Helper()
	byName := map[string]tarEntry{}
	var names []string
	for _, e := range entries {
		byName[strings.TrimPrefix(e.name, "./")] = e
		names = append(names, strings.TrimPrefix(e.name, "./"))
	}
	sort.Strings(names)
	var want []string
	for _, w := range c.want {
		name, owner, _ := strings.Cut(w, " ")
		want = append(want, name)
		e, ok := byName[name]
		if !ok {
			t.Errorf("RUN %s: layer lacks %s; has %v", c.run, name, names)
			continue
		}
		if owner != "" && fmt.Sprintf("%d:%d", e.uid, e.gid) != owner {
			t.Errorf("RUN %s: %s owned by %d:%d, want %s", c.run, name, e.uid, e.gid, owner)
		}
	}
	sort.Strings(want)
	if c.exact && strings.Join(want, ",") != strings.Join(names, ",") {
		t.Errorf("RUN %s: layer holds %v, want exactly %v", c.run, names, want)
	}
}

func skopeoInspect(t *testing.T, a *account, dir string) {
	t.Helper()
	_, err := exec.LookPath("skopeo")
	testenv.Need(t, err == nil, "skopeo (apt install skopeo)")
	r := runCmd(t, a.commandOf(context.Background(), "skopeo", "inspect", "oci:"+dir))
	if r.code != 0 {
		t.Errorf("skopeo inspect oci:%s: %s", dir, r)
		return
	}
	var out struct{ Layers []string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Layers) == 0 {
		t.Errorf("skopeo inspect printed no layers: %v\n%s", err, r.stdout)
	}
}

// podmanLists checks `podman images` over the same store lists repo.
func podmanLists(t *testing.T, a *account, repo string) {
	t.Helper()
	_, err := exec.LookPath("podman")
	testenv.Need(t, err == nil, "podman (apt install podman)")
	r := runCmd(t, a.commandOf(context.Background(), "podman",
		"--root", a.root, "--runroot", a.runRoot, "--storage-driver", "overlay",
		"--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"))
	if r.code != 0 || !strings.Contains(r.stdout, repo+":latest") {
		t.Errorf("podman images does not list %s: %s", repo, r)
	}
}

func copyTree(t *testing.T, src, dst string, a *account) {
	t.Helper()
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if os.Getuid() == 0 {
		exec.Command("chown", "-R", fmt.Sprintf("%d:%d", a.uid, a.gid), dst).Run()
	}
}

func containsLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) {
			ok := true
			for i := range fields {
				if f[i] != fields[i] {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestConcurrentBuildsShareOneStore runs three builds at once on one store,
// two of them making the very same layers, as CI jobs of one user would.
func TestConcurrentBuildsShareOneStore(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		dockerfiles := []string{
			"FROM alpine\nRUN echo same > /same\nRUN echo a > /a\n",
			"FROM alpine\nRUN echo same > /same\nRUN echo a > /a\n",
			"FROM alpine\nRUN echo other > /other\nWORKDIR /w\n",
		}
		results := make(chan string, len(dockerfiles))
		for i, df := range dockerfiles {
			ctxDir := a.writeContext(t, fmt.Sprintf("concurrent-%d", i), df)
			go func(i int) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				var out, errb strings.Builder
				cmd := a.command(ctx, "build", "-t", fmt.Sprintf("concurrent-%d", i), ctxDir)
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					results <- fmt.Sprintf("build %d: %v\n%s", i, err, errb.String())
					return
				}
				results <- ""
			}(i)
		}
		for range dockerfiles {
			if msg := <-results; msg != "" {
				t.Error(msg)
			}
		}
		first, second := a.inspect(t, "concurrent-0"), a.inspect(t, "concurrent-1")
		if len(first.RootFS.DiffIDs) != 3 || len(second.RootFS.DiffIDs) != 3 {
			t.Fatalf("want 3 layers each, got %v and %v", first.RootFS.DiffIDs, second.RootFS.DiffIDs)
		}
		if third := a.inspect(t, "concurrent-2"); third.Config.WorkingDir != "/w" {
			t.Errorf("third build's WorkingDir = %q", third.Config.WorkingDir)
		}
		snaps, _ := filepath.Glob(filepath.Join(a.root, "stepexec", "snapshots", "*", "*"))
		var left []string
		for _, s := range snaps {
			if filepath.Base(s) != "lock" {
				left = append(left, s)
			}
		}
		if len(left) > 0 {
			t.Errorf("snapshots left after concurrent builds: %v", left)
		}
	})
}
