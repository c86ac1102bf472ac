package integration

import (
	"strconv"
	"strings"
	"testing"
)

// dfRow returns `system df`'s TOTAL and SIZE for a TYPE.
func dfRow(t *testing.T, out, typ string) (total int, size string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, typ); ok {
			f := strings.Fields(rest)
			n, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("system df row %q: %v", line, err)
			}
			return n, f[len(f)-1]
		}
	}
	t.Fatalf("system df has no %s row:\n%s", typ, out)
	return 0, ""
}

func TestPruneHistoryAndDiskUsage(t *testing.T) {
	a := testUser(t)
	keep := a.writeContext(t, "keep", "FROM alpine\nLABEL a=b\nRUN echo k > /k\n")
	gone := a.writeContext(t, "gone", "FROM alpine\nRUN head -c 300000 /dev/urandom > /big\n")
	a.build(t, "-t", "keep", keep)
	a.build(t, "-t", "gone", gone)
	a.mustRun(t, "rmi", "gone")

	df := a.mustRun(t, "system", "df").stdout
	if n, _ := dfRow(t, df, "Images"); n != 2 {
		t.Errorf("system df counts %d images, want 2 (alpine, keep):\n%s", n, df)
	}
	if n, size := dfRow(t, df, "Build cache"); n != 2 || !strings.HasSuffix(size, "kB") {
		t.Errorf("system df: build cache %d entries of %s, want 2 entries, the removed image's ~300kB:\n%s", n, size, df)
	}
	if out := a.mustRun(t, "df").stdout; out != df {
		t.Errorf("df and system df differ:\n%s\n%s", out, df)
	}

	// Recently used entries are spared by until=.
	out := a.mustRun(t, "prune", "--filter", "until=1h").stdout
	if strings.Contains(out, "Deleted") {
		t.Errorf("prune --filter until=1h removed recent entries:\n%s", out)
	}
	// Plain prune: the entry only the cache kept goes with its layer; the
	// entry an image uses stays.
	layers := len(a.storeLayers(t))
	out = a.mustRun(t, "prune").stdout
	if strings.Count(out, "Deleted cache entry: sha256:") != 1 || len(a.storeLayers(t)) != layers-1 {
		t.Errorf("prune: %d → %d layers:\n%s", layers, len(a.storeLayers(t)), out)
	}
	if s := a.build(t, "-t", "keep", keep); len(s.ran) != 0 {
		t.Errorf("after prune the kept image's steps ran: %q", s.ran)
	}
	if s := a.build(t, gone); len(s.ran) != 1 {
		t.Errorf("after prune the removed image's step did not run: %q", s.ran)
	}
	// --all: every entry.
	out = a.mustRun(t, "prune", "--all").stdout
	if strings.Count(out, "Deleted cache entry: sha256:") != 2 {
		t.Errorf("prune --all:\n%s", out)
	}
	if s := a.build(t, "-t", "keep", keep); len(s.ran) != 1 {
		t.Errorf("after prune --all the step was cached: %q", s.cached)
	}

	r := a.run(t, "prune", "--filter", "until=soon")
	if r.code != 2 || !strings.Contains(r.stderr, "until=soon") {
		t.Errorf("a bad filter: %s", r)
	}

	h := a.mustRun(t, "history", "--no-trunc", "keep").stdout
	lines := strings.Split(strings.TrimSpace(h), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "CREATED") {
		t.Fatalf("history: want a header and 3 steps:\n%s", h)
	}
	for i, want := range []struct{ by, size string }{
		{"RUN /bin/sh -c echo k > /k", "kB"},
		{"LABEL a=b", "0B"},
		{"", "MB"}, // the base image's layer
	} {
		line := lines[i+1]
		if !strings.Contains(line, want.by) || !strings.Contains(line, want.size) {
			t.Errorf("history line %d = %q, want %q and a size in %s", i+1, line, want.by, want.size)
		}
	}
}
