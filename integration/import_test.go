package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestImportCompressedTarballs: import takes every format docker takes for
// an archive (plain, gzip, bzip2, xz, zstd), and each gives the very layer
// the gzip tarball gives.
func TestImportCompressedTarballs(t *testing.T) {
	testenv.Need(t, fileExists(tarball), "Alpine tarball %s (set STEPEXEC_ALPINE_TARBALL)", tarball)
	plain, err := exec.Command("gzip", "-dc", tarball).Output()
	if err != nil {
		t.Fatalf("gzip -d: %v", err)
	}
	formats := map[string][]byte{"tar": plain} // by file name extension
	for ext, tool := range map[string]string{"bz2": "bzip2", "xz": "xz", "zst": "zstd"} {
		_, err := exec.LookPath(tool)
		testenv.Need(t, err == nil, "%s, to compress a tarball", tool)
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(plain)
		if formats[ext], err = cmd.Output(); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		want := a.inspect(t, "alpine").RootFS.DiffIDs
		before := a.storeLayers(t)
		for ext, data := range formats {
			p := filepath.Join(a.work, "alpine.tar."+ext)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			a.own(t, p)
			name := "alpine-" + ext + ":test"
			a.mustRun(t, "import", p, name)
			if got := a.inspect(t, name).RootFS.DiffIDs; len(got) != 1 || got[0] != want[0] {
				t.Errorf("%s: layers %v, want the gzip tarball's %v", ext, got, want)
			}
			a.assertNothingLeft(t, before) // and no second layer
		}
	})
}
