package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountSource builds a source tree for a mount test: dir d (0750,
// 1000:1000) holding f ("hi\n", 0640, 1000:1000), and file one ("one\n",
// 0644, 0:0), under a 0700 directory, as the store's are: as real root a
// step's root cannot reach them by path (libcontainer's privileged side
// opens them).
type mountSource struct{ dir, file string }

func newMountSource(t *testing.T) mountSource {
	t.Helper()
	base := t.TempDir()
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	s := mountSource{dir: filepath.Join(base, "d"), file: filepath.Join(base, "one")}
	write := func(p, data string, mode fs.FileMode, id int) {
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		chownMod(t, p, id, mode)
	}
	if err := os.Mkdir(s.dir, 0o750); err != nil {
		t.Fatal(err)
	}
	chownMod(t, s.dir, 1000, 0o750)
	write(filepath.Join(s.dir, "f"), "hi\n", 0o640, 1000)
	write(s.file, "one\n", 0o644, 0)
	return s
}

func chownMod(t *testing.T, p string, id int, mode fs.FileMode) {
	t.Helper()
	if err := os.Lchown(p, id, id); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// tree describes every entry under root (type, mode, owner, size, link
// target; never times), to tell whether a step left a trace.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %q", b)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[strings.TrimPrefix(p, root)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertSameTree fails the test for every entry added, removed or changed.
func assertSameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, d := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared after the step (%s)", what, p, d)
		} else if b != d {
			t.Errorf("%s: %s changed: %s, was %s", what, p, d, b)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s vanished after the step", what, p)
		}
	}
}

// optsOf prints the mount options of the mount at target, as the step sees it.
func optsOf(target string) string {
	return `awk '$5=="` + target + `" {print $6}' /proc/self/mountinfo`
}

// TestMountKinds runs a step per kind of mount and checks what the step
// sees (contents, owners, modes, writability, mount options), and that
// afterwards neither the rootfs nor the sources hold a trace of it: no
// mountpoint stub, no file written under a mount, no change to a source
// of a discarded-writes bind, nothing mounted or left in the state dir.
func TestMountKinds(t *testing.T) {
	rootfs, r := alpineRootfs(t), newRuntime(t)
	src := newMountSource(t)
	secret := []byte("s3cr3t-value")
	tests := []struct {
		name   string
		mounts func(t *testing.T) []Mount
		script string
		want   string
	}{
		{"bind dir read-only",
			func(*testing.T) []Mount { return []Mount{{Target: "/m", Source: Bind{Path: src.dir}, ReadOnly: true}} },
			`cat /m/f; stat -c '%u:%g:%a' /m /m/f; touch /m/new 2>/dev/null && echo writable || echo ro`,
			"hi\n1000:1000:750\n1000:1000:640\nro\n"},
		{"bind dir discarding writes",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/m", Source: Bind{Path: src.dir, DiscardWrites: true}}}
			},
			`stat -c '%u:%g:%a' /m; echo x >> /m/f && echo n > /m/new && mkdir /m/sub && cat /m/f /m/new`,
			"1000:1000:750\nhi\nx\nn\n"},
		{"bind file read-only",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/etc/one.conf", Source: Bind{Path: src.file}, ReadOnly: true}}
			},
			`cat /etc/one.conf; stat -c '%u:%g:%a' /etc/one.conf; echo x > /etc/one.conf 2>/dev/null && echo writable || echo ro`,
			"one\n0:0:644\nro\n"},
		{"bind file discarding writes",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/opt/x/one", Source: Bind{Path: src.file, DiscardWrites: true}}}
			},
			`echo two >> /opt/x/one && cat /opt/x/one && stat -c '%u:%g:%a' /opt/x/one`,
			"one\ntwo\n0:0:644\n"},
		{"bind over an existing dir",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/etc/apk", Source: Bind{Path: src.dir}, ReadOnly: true}}
			},
			`ls -A /etc/apk`,
			"f\n"},
		{"bind of a path already in the step's ids",
			func(t *testing.T) []Mount {
				return []Mount{{Target: "/m", Source: Bind{Path: stepView(t, src.dir), IDMapped: true}, ReadOnly: true}}
			},
			`stat -c '%u:%g' /m/f`,
			"1000:1000\n"},
		{"bind of a path already in the step's ids, discarding writes",
			func(t *testing.T) []Mount {
				return []Mount{{Target: "/m", Source: Bind{Path: stepView(t, src.dir), IDMapped: true, DiscardWrites: true}}}
			},
			`echo x >> /m/f && stat -c '%u:%g' /m /m/f && echo n > /m/new && stat -c '%u:%g' /m/new`,
			"1000:1000\n1000:1000\n0:0\n"},
		{"tmpfs on a new target",
			func(*testing.T) []Mount { return []Mount{{Target: "/t/u", Source: Tmpfs{}}} },
			`stat -c %a /t/u; echo x > /t/u/f && cat /t/u/f; ` + optsOf("/t/u") + ` | grep -c 'nosuid,nodev'`,
			"1777\nx\n1\n"},
		{"tmpfs on an existing dir, size limited",
			func(*testing.T) []Mount { return []Mount{{Target: "/var/cache", Source: Tmpfs{Size: 1 << 20}}} },
			`ls -A /var/cache | wc -l; stat -c %a /var/cache; dd if=/dev/zero of=/var/cache/big bs=1k count=2048 2>/dev/null && echo fits || echo full`,
			"0\n755\nfull\n"},
		{"tmpfs read-only",
			func(*testing.T) []Mount { return []Mount{{Target: "/t", Source: Tmpfs{}, ReadOnly: true}} },
			`touch /t/x 2>/dev/null && echo writable || echo ro`,
			"ro\n"},
		{"secret",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/run/secrets/tok", Source: Secret{Data: secret, Mode: 0o440, UID: 1000, GID: 1001}}}
			},
			`cat /run/secrets/tok; echo; stat -c '%a %u %g' /run/secrets/tok; echo x > /run/secrets/tok 2>/dev/null && echo writable || echo ro; ` + optsOf("/run/secrets/tok") + ` | grep -c 'ro,nosuid,nodev,noexec'`,
			"s3cr3t-value\n440 1000 1001\nro\n1\n"},
		{"secret with an x bit is executable",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/usr/local/bin/s", Source: Secret{Data: []byte("#!/bin/sh\necho ran\n"), Mode: 0o500}}}
			},
			`s; ` + optsOf("/usr/local/bin/s") + ` | grep -q noexec && echo noexec || echo exec`,
			"ran\nexec\n"},
		{"nested targets, given inner first",
			func(*testing.T) []Mount {
				return []Mount{
					{Target: "/n/sub/", Source: Bind{Path: src.dir}, ReadOnly: true},
					{Target: "/n/x/../s", Source: Secret{Data: secret, Mode: 0o400}},
					{Target: "/n", Source: Tmpfs{}},
				}
			},
			`cat /n/sub/f /n/s; echo; ls -A /n /n/sub`,
			"hi\ns3cr3t-value\n/n:\ns\nsub\n\n/n/sub:\nf\n"},
		{"same target twice: the last wins",
			func(*testing.T) []Mount {
				return []Mount{{Target: "/d", Source: Tmpfs{}}, {Target: "/d", Source: Bind{Path: src.dir}, ReadOnly: true}}
			},
			`ls -A /d`,
			"f\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mounts := tt.mounts(t)
			before, srcBefore := tree(t, rootfs), tree(t, filepath.Dir(src.dir))
			id := fmt.Sprintf("m%d", time.Now().UnixNano())
			var secretsOnTmpfs bool
			res, out, errOut := run(t, r, rootfs, func(s *Spec) {
				s.ID, s.Mounts = id, mounts
				s.OnStart = func() { secretsOnTmpfs = mountedFS(t, filepath.Join(r.files, id, "secrets")) == "tmpfs" }
			}, tt.script)
			if res.ExitCode != 0 || out != tt.want {
				t.Errorf("exit %d, stdout %q, want %q (stderr: %s)", res.ExitCode, out, tt.want, errOut)
			}
			assertSameTree(t, "rootfs", before, tree(t, rootfs))
			assertSameTree(t, "sources", srcBefore, tree(t, filepath.Dir(src.dir)))
			assertStepGone(t, r, id)
			if hasSecret(mounts) != secretsOnTmpfs {
				t.Errorf("secrets on a tmpfs of the step's own: %v, want %v", secretsOnTmpfs, hasSecret(mounts))
			}
			if hasSecret(mounts) {
				assertNotInTree(t, r.stateDir, secret)
			}
		})
	}
}

func hasSecret(ms []Mount) bool {
	return slices.ContainsFunc(ms, func(m Mount) bool { _, ok := m.Source.(Secret); return ok })
}

// mountedFS returns the filesystem type mounted at dir in this thread's
// mount namespace, "" if none.
func mountedFS(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "-"); len(f) > 4 && f[4] == dir && i > 0 && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// assertStepGone checks that nothing of step id is mounted or left in the
// runtime's state dir.
func assertStepGone(t *testing.T, r *Runtime, id string) {
	t.Helper()
	assertNotMounted(t, r.stateDir)
	if _, err := os.Lstat(filepath.Join(r.files, id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("step files dir left behind: %v", err)
	}
}

// assertNotInTree fails if any file under dir holds data.
func assertNotInTree(t *testing.T, dir string, data []byte) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, data) {
				t.Errorf("%s holds the secret", p)
			}
		}
		return nil
	})
}

// TestMountTargetUnderSymlink checks that targets under symlinks of the
// image are resolved inside the rootfs, as libcontainer resolves them:
// an absolute link to a host directory or a relative one climbing out
// land in the rootfs, nothing is created on the host, and the stubs made
// at the resolved paths are removed.
func TestMountTargetUnderSymlink(t *testing.T) {
	plain, r := plainAlpine(t), newRuntime(t)
	host := t.TempDir()
	for name, target := range map[string]string{"abs": host, "rel": "../../../../../../../.." + host} {
		if err := os.Symlink(target, filepath.Join(plain, name)); err != nil {
			t.Fatal(err)
		}
	}
	rootfs := stepView(t, plain)
	src := newMountSource(t)
	before := tree(t, rootfs)
	id := fmt.Sprintf("s%d", time.Now().UnixNano())
	res, out, errOut := run(t, r, rootfs, func(s *Spec) {
		s.ID = id
		s.Mounts = []Mount{
			{Target: "/abs/t", Source: Tmpfs{}},
			{Target: "/rel/b", Source: Bind{Path: src.dir}, ReadOnly: true},
		}
	}, `echo x > /abs/t/f && cat /rel/b/f && `+optsOf(host+"/t")+` | wc -l && `+optsOf(host+"/b")+` | wc -l`)
	if res.ExitCode != 0 || out != "hi\n1\n1\n" {
		t.Errorf("exit %d, stdout %q (stderr: %s)", res.ExitCode, out, errOut)
	}
	if ents, err := os.ReadDir(host); err != nil || len(ents) != 0 {
		t.Errorf("host directory %s: %v (%v): a mount target escaped the rootfs", host, ents, err)
	}
	assertSameTree(t, "rootfs", before, tree(t, rootfs))
	assertStepGone(t, r, id)
}

// TestMountErrors checks that a mount the runtime cannot make fails the
// step with a message naming it, before anything runs, and leaves nothing.
func TestMountErrors(t *testing.T) {
	rootfs, r := alpineRootfs(t), newRuntime(t)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name  string
		mount Mount
		want  string
	}{
		{"missing bind source", Mount{Target: "/m", Source: Bind{Path: missing}}, missing},
		{"missing writable bind source", Mount{Target: "/m", Source: Bind{Path: missing, DiscardWrites: true}}, missing},
		{"relative target", Mount{Target: "m", Source: Tmpfs{}}, `invalid mount target "m"`},
		{"root target", Mount{Target: "/", Source: Tmpfs{}}, `invalid mount target "/"`},
		{"secret owner outside the step's ids", Mount{Target: "/s", Source: Secret{Data: []byte("x"), UID: 70000}}, "70000:0 is not an id of the step's user namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tree(t, rootfs)
			id := fmt.Sprintf("e%d", time.Now().UnixNano())
			_, err := r.Run(context.Background(), Spec{ID: id, Rootfs: rootfs, Args: []string{"true"}, Env: alpineEnv,
				Mounts: []Mount{{Target: "/a", Source: Secret{Data: []byte("x")}}, tt.mount}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run: %v, want an error with %q", err, tt.want)
			}
			assertSameTree(t, "rootfs", before, tree(t, rootfs))
			assertStepGone(t, r, id)
		})
	}
}

// TestMainThreadStaysInBuilderNamespace runs steps concurrently and checks
// that the process's main thread is still in the builder's mount
// namespace: libcontainer's mount-source goroutine leaves its thread in a
// step's namespace, and were that the main thread (which Go never ends)
// the step's mounts, a secret's tmpfs included, would outlive the step.
// (Without the fix in init, the goroutine lands on the main thread in
// about one run out of four.)
func TestMainThreadStaysInBuilderNamespace(t *testing.T) {
	// Every target exists (no stub that another step's teardown would
	// remove from under this one): /etc/resolv.conf too.
	plain, r := plainAlpine(t), newRuntime(t)
	if err := os.WriteFile(filepath.Join(plain, "etc/resolv.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := stepView(t, plain)
	errc := make(chan error, 4)
	for g := 0; g < cap(errc); g++ {
		go func() {
			var err error
			for i := 0; i < 5 && err == nil; i++ {
				_, err = r.Run(context.Background(), Spec{ID: fmt.Sprintf("ns%d-%d-%d", g, i, time.Now().UnixNano()), Rootfs: rootfs,
					Args: []string{"true"}, Env: alpineEnv, Mounts: []Mount{{Target: "/etc/motd", Source: Secret{Data: []byte("x")}}}})
			}
			errc <- err
		}()
	}
	var errs []error
	for g := 0; g < cap(errc); g++ {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	main, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	this, err := os.Readlink("/proc/thread-self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if main != this {
		t.Errorf("the main thread is in mount namespace %s, the builder's is %s", main, this)
	}
}
