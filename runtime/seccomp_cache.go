package runtime

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// The capture helper costs ~17 ms once per build, which an incremental
// build (one changed RUN) pays in full. Its result depends only on the
// profile, the code that compiled it (this very binary, with libcontainer
// and libseccomp in it) and the kernel libseccomp probed, so a filter
// captured once is kept in a directory of the store (Options.FilterCache)
// under a key of all of these, and later builds load it from there.
// The entry is checked as a fresh capture is (validate), and a missing,
// unreadable or stale one only means capturing again.

// filterCacheKey is the key of cfg's filter for this binary on this
// kernel, or "" when the binary has no build ID to tell builds apart.
func filterCacheKey(cfg *configs.Seccomp) string {
	id := goBuildID()
	if id == "" {
		return ""
	}
	profile, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return ""
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	level, _ := libseccomp.GetAPI()
	h := sha256.New()
	fmt.Fprintf(h, "stepexec seccomp filter v1\nbuild %s\nkernel %s %s %s\nlibseccomp %d.%d.%d api %d\n",
		id, unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:]),
		unix.ByteSliceToString(uts.Machine[:]), major, minor, micro, level)
	h.Write(profile)
	return hex.EncodeToString(h.Sum(nil))
}

// goBuildID is the Go build ID the linker put in the running binary's
// .note.go.buildid section (kept by -s -w): different for any change of
// the code or the libraries linked in.
func goBuildID() string {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return ""
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return ""
	}
	data, err := sec.Data()
	if err != nil || len(data) < 16 {
		return ""
	}
	return hex.EncodeToString(data)
}

// loadCachedFilter reads the filter kept under key in dir, nil when there
// is none usable.
func loadCachedFilter(dir, key string) *stepinit.Filter {
	b, err := os.ReadFile(filepath.Join(dir, key+".json"))
	if err != nil {
		return nil
	}
	var f stepinit.Filter
	if json.Unmarshal(b, &f) != nil || f.Validate() != nil {
		return nil
	}
	return &f
}

// storeCachedFilter keeps f under key in dir (written whole or not at
// all); failing to is not an error, the next build captures again.
func storeCachedFilter(dir, key string, f *stepinit.Filter) {
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return
	}
	if os.Rename(tmp.Name(), filepath.Join(dir, key+".json")) != nil {
		os.Remove(tmp.Name())
		return
	}
	dropOldFilters(dir, keptFilters)
}

// keptFilters bounds the entries: each new binary (every build of it)
// and kernel makes one (~10 KB), and only the newest are ever used.
const keptFilters = 8

// dropOldFilters removes all but the keep most recently written entries.
func dropOldFilters(dir string, keep int) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(paths) <= keep {
		return
	}
	mtime := map[string]int64{}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			mtime[p] = fi.ModTime().UnixNano()
		}
	}
	sort.Slice(paths, func(i, j int) bool { return mtime[paths[i]] > mtime[paths[j]] })
	for _, p := range paths[keep:] {
		os.Remove(p)
	}
}
