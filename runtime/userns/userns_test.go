package userns

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/stepexec/stepexec/internal/testenv"
)

func TestNestedFromMap(t *testing.T) {
	tests := []struct {
		name, in string
		want     []configs.IDMap
		wantErr  bool
	}{
		{
			name: "initial namespace",
			in:   "         0          0 4294967295\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
		},
		{
			name: "uid plus subuid range: extents kept apart, clipped at 65536",
			in:   "         0       1001          1\n         1     100000      65536\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1, HostID: 1, Size: 65535}},
		},
		{
			name: "single uid",
			in:   "0 1001 1\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		},
		{
			name: "several subuid ranges, one beyond the limit dropped",
			in:   "0 1000 1\n1 100000 1000\n1001 300000 70000\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1, HostID: 1, Size: 1000}, {ContainerID: 1001, HostID: 1001, Size: 64535}},
		},
		{name: "nothing below 65536", in: "70000 1000 5\n", wantErr: true},
		{name: "malformed", in: "0 1000\n", wantErr: true},
		{name: "not a number", in: "0 x 1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nestedFromMap(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNestedIDMapsCurrentProcess(t *testing.T) {
	uids, gids, err := NestedIDMaps()
	if err != nil {
		t.Fatal(err)
	}
	if isRealRoot() {
		// Root's subordinate ids, never host root.
		for _, m := range [][]configs.IDMap{uids, gids} {
			var n int64
			for _, e := range m {
				if e.ContainerID != n || e.HostID == 0 {
					t.Errorf("map %+v: extent %+v is not contiguous or maps host id 0", m, e)
				}
				n += e.Size
			}
			if n != 65536 {
				t.Errorf("map %+v covers %d ids, want 65536", m, n)
			}
		}
		return
	}
	for _, m := range [][]configs.IDMap{uids, gids} {
		if len(m) == 0 || m[0].ContainerID != 0 || m[0].HostID != 0 {
			t.Errorf("map %+v does not start with id 0 as identity", m)
		}
		for _, e := range m {
			if e.ContainerID != e.HostID || e.ContainerID+e.Size > 65536 {
				t.Errorf("extent %+v is not an identity below 65536", e)
			}
		}
	}
}

// fakeHost builds a host whose files live in a temp dir; files maps a
// field name to its content ("" content with missing=true is not created).
type fakeFiles struct {
	subuid, subgid, clone, maxns, apparmor, filesystems *string
	apparmorLabel                                       *string // this process's AppArmor profile
	modules                                             bool
}

func s(v string) *string { return &v }

func newFakeHost(t *testing.T, ff fakeFiles) host {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, content *string) string {
		p := filepath.Join(dir, name)
		if content != nil {
			if err := os.WriteFile(p, []byte(*content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	h := host{
		uid: 1001, gid: 1001, username: "ci",
		subuid:        write("subuid", ff.subuid),
		subgid:        write("subgid", ff.subgid),
		usernsClone:   write("unprivileged_userns_clone", ff.clone),
		maxUserNS:     write("max_user_namespaces", ff.maxns),
		apparmorUNS:   write("apparmor_restrict_unprivileged_userns", ff.apparmor),
		apparmorLabel: write("attr-apparmor-current", ff.apparmorLabel),
		executable:    "/opt/bin/stepexec",
		filesystems:   write("filesystems", ff.filesystems),
		modulesDir:    filepath.Join(dir, "modules"),
		lookPath: func(name string) (string, error) {
			p := filepath.Join(bin, name)
			if _, err := os.Stat(p); err != nil {
				return "", errors.New("not found")
			}
			return p, nil
		},
		hasFileCaps: func(path string) bool { return strings.HasSuffix(path, ".caps") },
	}
	if ff.modules {
		md := filepath.Join(h.modulesDir, "kernel", "fs", "overlayfs")
		if err := os.MkdirAll(md, 0o755); err != nil {
			t.Fatal(err)
		}
		write("modules/kernel/fs/overlayfs/overlay.ko.xz", s(""))
	}
	return h
}

func TestPreflight(t *testing.T) {
	good := fakeFiles{
		subuid: s("other:1:5\nci:100000:65536\n"), subgid: s("1001:100000:65536\n"),
		clone: s("1\n"), maxns: s("1000\n"), apparmor: s("0\n"),
		filesystems: s("nodev\tproc\nnodev\toverlay\n"),
	}
	with := func(f func(*fakeFiles)) fakeFiles { c := good; f(&c); return c }
	tests := []struct {
		name     string
		files    fakeFiles
		mode     Mode
		realRoot bool
		// stepShift: real root, not the outer namespace's root
		stepShift bool
		helpers   string   // "setuid", "caps", "plain", "missing"
		want      []string // one per problem (line)
		also      []string // more text the problems must contain
	}{
		{name: "all good", files: good, helpers: "setuid"},
		{name: "helpers with file caps", files: good, helpers: "caps"},
		{name: "helpers missing", files: good, helpers: "missing", want: []string{"newuidmap is not in PATH", "newgidmap is not in PATH"}},
		{name: "helpers not setuid", files: good, helpers: "plain", want: []string{"newuidmap is neither setuid root nor has file capabilities", "newgidmap is neither"}},
		{name: "helpers irrelevant in single-uid mode", files: good, helpers: "missing", mode: SingleUID},
		{name: "no subuid entry", files: with(func(f *fakeFiles) { f.subuid = s("other:100000:65536\n") }), helpers: "setuid", want: []string{"subuid has no entry for user ci"}},
		{name: "no subgid file", files: with(func(f *fakeFiles) { f.subgid = nil }), helpers: "setuid", want: []string{"subgid does not exist"}},
		{name: "subgid matched by numeric id", files: with(func(f *fakeFiles) { f.subuid = s("1001:100000:65536\n") }), helpers: "setuid"},
		{name: "range too small", files: with(func(f *fakeFiles) { f.subuid = s("ci:100000:1000\n") }), helpers: "setuid", want: []string{"only 1000 subordinate uids, fewer than 65536"}},
		{name: "two ranges add up", files: with(func(f *fakeFiles) { f.subuid = s("ci:100000:30000\nci:200000:40000\n") }), helpers: "setuid"},
		{name: "userns clone off", files: with(func(f *fakeFiles) { f.clone = s("0\n") }), helpers: "setuid", want: []string{"unprivileged_userns_clone is 0"}},
		{name: "max user namespaces 0", files: with(func(f *fakeFiles) { f.maxns = s("0\n") }), helpers: "setuid", want: []string{"max_user_namespaces is 0"}},
		{
			name: "apparmor restriction, unconfined", files: with(func(f *fakeFiles) { f.apparmor, f.apparmorLabel = s("1\n"), s("unconfined\n") }), helpers: "setuid",
			want: []string{"apparmor_restrict_unprivileged_userns is 1) and /opt/bin/stepexec runs unconfined"},
			also: []string{`profile stepexec "/opt/bin/stepexec" flags=(unconfined) {\n  userns,`, "> /etc/apparmor.d/stepexec && apparmor_parser -r /etc/apparmor.d/stepexec`",
				"scripts/setup-host.sh --apparmor=/opt/bin/stepexec", "only root can write", "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"},
		},
		{name: "apparmor restriction, no label to read", files: with(func(f *fakeFiles) { f.apparmor = s("1\n") }), helpers: "setuid", want: []string{"apparmor_restrict_unprivileged_userns is 1"}},
		{name: "apparmor restriction, binary under a profile", files: with(func(f *fakeFiles) { f.apparmor, f.apparmorLabel = s("1\n"), s("stepexec (unconfined)\n") }), helpers: "setuid"},
		{name: "apparmor restriction off", files: with(func(f *fakeFiles) { f.apparmor, f.apparmorLabel = s("0\n"), s("unconfined\n") }), helpers: "setuid"},
		{name: "apparmor restriction, real root", files: with(func(f *fakeFiles) { f.apparmor, f.apparmorLabel = s("1\n"), s("unconfined\n") }), helpers: "missing", realRoot: true},
		{name: "sysctl files absent are fine", files: with(func(f *fakeFiles) { f.clone, f.apparmor = nil, nil }), helpers: "setuid"},
		{name: "no overlay", files: with(func(f *fakeFiles) { f.filesystems = s("nodev\tproc\n") }), helpers: "setuid", want: []string{"overlayfs is unavailable"}},
		{name: "overlay module loadable", files: with(func(f *fakeFiles) { f.filesystems = s("nodev\tproc\n"); f.modules = true }), helpers: "setuid"},
		{name: "real root skips userns checks", files: with(func(f *fakeFiles) { f.subuid = nil; f.maxns = s("0") }), helpers: "missing", realRoot: true},
		{name: "real root still needs overlay", files: with(func(f *fakeFiles) { f.filesystems = s("") }), helpers: "missing", realRoot: true, want: []string{"overlayfs is unavailable"}},
		{name: "real root with subordinate ids", files: with(func(f *fakeFiles) { f.subuid, f.subgid = s("root:1000000000:65536\n"), s("0:1000000000:65536\n") }), helpers: "missing", realRoot: true, stepShift: true},
		{
			name: "real root without subordinate ids", files: good, helpers: "missing", realRoot: true, stepShift: true,
			// One sentence naming both files and the fix.
			want: []string{"subuid has no entry for root and /"},
			also: []string{"as root, stepexec runs RUN steps as root's subordinate ids, but /", "subgid has no entry for root: give root a range of 65536 ids as root, e.g. `usermod --add-subuids 1000000000-1000065535 --add-subgids 1000000000-1000065535 root`"},
		},
		{
			name: "real root with a small range and no subgid file", files: with(func(f *fakeFiles) { f.subuid, f.subgid = s("root:1000000000:1000\n"), nil }), helpers: "missing", realRoot: true, stepShift: true,
			want: []string{"subuid gives root only 1000 ids and /"},
			also: []string{"subgid does not exist: give root"},
		},
		{name: "outer namespace child needs no root range", files: good, helpers: "missing", realRoot: true},
		{
			name:    "several problems listed together",
			files:   with(func(f *fakeFiles) { f.subuid = nil; f.maxns = s("0") }),
			helpers: "missing",
			want:    []string{"max_user_namespaces is 0", "newuidmap is not in PATH", "newgidmap is not in PATH", "subuid does not exist"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t, tt.files)
			h.realRoot, h.stepShift = tt.realRoot, tt.stepShift
			bin := filepath.Join(filepath.Dir(h.subuid), "bin")
			for _, name := range []string{"newuidmap", "newgidmap"} {
				var err error
				switch tt.helpers {
				case "setuid", "plain":
					p := filepath.Join(bin, name)
					err = os.WriteFile(p, nil, 0o755)
					if err == nil && tt.helpers == "setuid" {
						err = os.Chmod(p, os.ModeSetuid|0o755)
					}
				case "caps":
					p := filepath.Join(bin, name+".caps")
					err = os.WriteFile(p, nil, 0o755)
					if err == nil {
						err = os.Symlink(p, filepath.Join(bin, name))
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if tt.helpers == "setuid" && os.Geteuid() != 0 {
				// A setuid file not owned by root does not count: pretend
				// the fake helpers carry file capabilities instead.
				h.hasFileCaps = func(string) bool { return true }
			}
			if tt.helpers == "caps" {
				h.hasFileCaps = func(p string) bool { return strings.HasSuffix(p, ".caps") }
				lp := h.lookPath
				h.lookPath = func(n string) (string, error) {
					p, err := lp(n)
					if err != nil {
						return "", err
					}
					return filepath.EvalSymlinks(p)
				}
			}
			err := h.preflight(tt.mode)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no problem reported, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range append(tt.want, tt.also...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
}

func TestPreflightThisHost(t *testing.T) {
	// This machine is set up for stepexec: whoever runs the test (root or
	// stepexec-ci), no problem may be reported.
	if err := Preflight(SubIDs); err != nil {
		if os.Getenv("STEPEXEC_REQUIRE_ALL") != "1" {
			t.Skipf("host not set up for rootless builds: %v", err)
		}
		t.Fatal(err)
	}
}

func TestInUserNamespace(t *testing.T) {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(strings.Fields(string(b)), " ") != "0 0 4294967295"
	if got := InUserNamespace(); got != want {
		t.Errorf("InUserNamespace() = %v with uid_map %q", got, b)
	}
}

// TestWriteProfileCommand runs the command the AppArmor diagnosis gives
// (into a temp file instead of /etc/apparmor.d) and checks it writes the
// profile, for paths a shell or printf would mangle.
func TestWriteProfileCommand(t *testing.T) {
	for _, exe := range []string{"/usr/local/bin/stepexec", "/home/a b/it's/stepexec", `/opt/%s\n/stepexec`} {
		file := filepath.Join(t.TempDir(), "profile")
		out, err := exec.Command("sh", "-c", writeProfileCommand(exe, file)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", exe, err, out)
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if want := AppArmorProfile(exe); string(got) != want {
			t.Errorf("%s: wrote\n%s\nwant\n%s", exe, got, want)
		}
	}
}

// TestAppArmorProfileScript: scripts/setup-host.sh --apparmor installs the
// profile the diagnosis describes.
func TestAppArmorProfileScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/apparmor-profile.sh")
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(script)
	testenv.Need(t, err == nil, "the checkout's scripts beside the package: %v", err)
	const exe = "/home/a b/stepexec"
	out, err := exec.Command(script, exe).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := AppArmorProfile(exe); string(out) != want {
		t.Errorf("the script prints\n%s\nwant\n%s", out, want)
	}
}
