package runtime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// TestFilterCache: the first build captures the filter and keeps it under
// a key of the profile, the binary and the kernel; later ones load what is
// kept; an unusable entry is captured again and replaced.
func TestFilterCache(t *testing.T) {
	cfg, err := defaultSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filterCacheKey(cfg)
	if key == "" {
		t.Fatal("no cache key: the test binary has no Go build ID?")
	}
	first, err := cachedOrCaptured(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	kept := loadCachedFilter(dir, key)
	if kept == nil || !sameFilter(kept, first) {
		t.Fatal("the kept filter is not byte for byte the one captured")
	}
	fresh, err := captureFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := equivalent(fresh, first); err != nil {
		t.Errorf("the kept filter and a fresh capture differ: %v", err)
	}

	// A later build takes what is kept (here a planted, shorter program).
	planted := *first
	planted.Program = first.Program[:len(first.Program)-stepinit.SockFilterSize]
	storeCachedFilter(dir, key, &planted)
	if got, err := cachedOrCaptured(cfg, dir); err != nil || !sameFilter(got, &planted) {
		t.Errorf("with an entry kept (err %v): not the entry's filter", err)
	}

	// An unusable entry is captured again and replaced.
	for name, content := range map[string]string{"garbage": "{", "empty program": `{"via_seccomp":true,"flags":0,"program":""}`} {
		if err := os.WriteFile(filepath.Join(dir, key+".json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := cachedOrCaptured(cfg, dir)
		if err != nil {
			t.Fatalf("%s entry: %v", name, err)
		}
		if err := equivalent(got, first); err != nil {
			t.Errorf("%s entry: not a fresh capture: %v", name, err)
		}
		if again := loadCachedFilter(dir, key); again == nil || !sameFilter(again, got) {
			t.Errorf("%s entry was not replaced by the capture", name)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".put-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// Only the newest entries stay.
	for i := range keptFilters + 3 {
		storeCachedFilter(dir, fmt.Sprintf("k%02d", i), first)
		time.Sleep(2 * time.Millisecond) // distinct mtimes
	}
	if kept, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(kept) != keptFilters || !slices.Contains(kept, filepath.Join(dir, fmt.Sprintf("k%02d.json", keptFilters+2))) {
		t.Errorf("after %d more entries, kept %v: want the newest %d", keptFilters+3, kept, keptFilters)
	}

	// Another profile has another key.
	other := *cfg
	other.Syscalls = cfg.Syscalls[1:]
	if k := filterCacheKey(&other); k == key || k == "" {
		t.Errorf("a different profile's key %q, the default's %q", k, key)
	}
}

// sameFilter: byte for byte.
func sameFilter(a, b *stepinit.Filter) bool {
	return a.ViaSeccomp == b.ViaSeccomp && a.Flags == b.Flags && bytes.Equal(a.Program, b.Program)
}

// equivalent: loaded the same way, and programs that decide every system
// call alike (two captures may order libseccomp's output differently).
func equivalent(a, b *stepinit.Filter) error {
	if a.ViaSeccomp != b.ViaSeccomp || a.Flags != b.Flags {
		return fmt.Errorf("loaded with seccomp(2) %v flags %#x, and %v %#x", a.ViaSeccomp, a.Flags, b.ViaSeccomp, b.Flags)
	}
	return sameProgram(a.Program, b.Program)
}
