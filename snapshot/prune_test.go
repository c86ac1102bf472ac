package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPruneCopiedUpDirs: only directories an upper dir holds unchanged
// (empty, same metadata as the lowers show, not opaque) go.
func TestPruneCopiedUpDirs(t *testing.T) {
	stamp := time.Date(2024, 5, 1, 12, 0, 0, 123, time.UTC)
	type entry struct {
		path   string
		kind   string // dir, file, opaque (a directory marked opaque)
		mode   os.FileMode
		modify bool // a different mtime from the lower's
	}
	tests := []struct {
		name   string
		lowers [][]entry // top first
		upper  []entry
		want   []string // what stays in the upper
	}{
		{"copied-up dir goes", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "etc", kind: "dir"}}, nil},
		{"a dir with a new file stays", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "etc", kind: "dir"}, {path: "etc/resolv.conf", kind: "file"}}, []string{"etc", "etc/resolv.conf"}},
		{"changed mode stays", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "etc", kind: "dir", mode: 0o700}}, []string{"etc"}},
		{"changed mtime alone goes, as in BuildKit", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "etc", kind: "dir", modify: true}}, nil},
		{"a pruned child leaves its parent's mtime", [][]entry{{{path: "a", kind: "dir"}, {path: "a/b", kind: "dir"}}},
			[]entry{{path: "a", kind: "dir", mode: 0o700}, {path: "a/b", kind: "dir"}}, []string{"a"}},
		{"new dir stays", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "new", kind: "dir"}}, []string{"new"}},
		{"nested copy-ups go", [][]entry{{{path: "a", kind: "dir"}, {path: "a/b", kind: "dir"}}},
			[]entry{{path: "a", kind: "dir"}, {path: "a/b", kind: "dir"}}, nil},
		{"found in a deeper layer goes", [][]entry{{{path: "x", kind: "dir"}}, {{path: "a", kind: "dir"}}},
			[]entry{{path: "a", kind: "dir"}}, nil},
		{"opaque upper stays", [][]entry{{{path: "etc", kind: "dir"}}},
			[]entry{{path: "etc", kind: "opaque"}}, []string{"etc"}},
		{"shadowed by a file stays", [][]entry{{{path: "a", kind: "file"}}, {{path: "a", kind: "dir"}}},
			[]entry{{path: "a", kind: "dir"}}, []string{"a"}},
		{"hidden by an opaque ancestor stays", [][]entry{{{path: "a", kind: "opaque"}}, {{path: "a", kind: "dir"}, {path: "a/b", kind: "dir"}}},
			[]entry{{path: "a", kind: "opaque"}, {path: "a/b", kind: "dir"}}, []string{"a", "a/b"}},
		{"under an opaque upper stays", [][]entry{{{path: "a", kind: "dir"}, {path: "a/b", kind: "dir"}}},
			[]entry{{path: "a", kind: "opaque"}, {path: "a/b", kind: "dir"}}, []string{"a", "a/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			make := func(root string, es []entry) {
				for _, e := range es {
					p := filepath.Join(root, e.path)
					mode := e.mode
					if mode == 0 {
						mode = 0o755
					}
					switch e.kind {
					case "file":
						if err := os.WriteFile(p, nil, 0o644); err != nil {
							t.Fatal(err)
						}
					default:
						if err := os.Mkdir(p, mode); err != nil {
							t.Fatal(err)
						}
						if err := os.Chmod(p, mode); err != nil {
							t.Fatal(err)
						}
						if e.kind == "opaque" {
							if err := unix.Setxattr(p, "user.overlay.opaque", []byte("y"), 0); err != nil {
								t.Skipf("user xattrs on %s: %v", base, err)
							}
						}
					}
				}
				// Times last, deepest first: making children changes them.
				for i := len(es) - 1; i >= 0; i-- {
					ts := stamp
					if es[i].modify {
						ts = ts.Add(time.Hour)
					}
					if err := os.Chtimes(filepath.Join(root, es[i].path), ts, ts); err != nil {
						t.Fatal(err)
					}
				}
			}
			var lowers []string
			for i, l := range tt.lowers {
				dir := filepath.Join(base, "lower"+string(rune('0'+i)))
				os.Mkdir(dir, 0o755)
				make(dir, l)
				lowers = append(lowers, dir)
			}
			upper := filepath.Join(base, "upper")
			os.Mkdir(upper, 0o755)
			make(upper, tt.upper)
			if err := pruneCopiedUpDirs(upper, lowers); err != nil {
				t.Fatal(err)
			}
			var got []string
			filepath.Walk(upper, func(p string, _ os.FileInfo, err error) error {
				if err == nil && p != upper {
					rel, _ := filepath.Rel(upper, p)
					got = append(got, rel)
				}
				return nil
			})
			if !slices.Equal(got, tt.want) {
				t.Errorf("left in the upper: %v, want %v", got, tt.want)
			}
			for _, e := range tt.upper {
				fi, err := os.Lstat(filepath.Join(upper, e.path))
				if err == nil && !e.modify && !fi.ModTime().Equal(stamp) {
					t.Errorf("%s: mtime %v after pruning, want %v", e.path, fi.ModTime(), stamp)
				}
			}
		})
	}
}
