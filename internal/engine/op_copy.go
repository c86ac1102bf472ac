package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/util/system"
	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/internal/copier"
	"github.com/stepexec/stepexec/internal/fetch"
	"github.com/stepexec/stepexec/snapshot"
)

// checkCopy is COPY/ADD's check before the build: flags valid after
// expansion, and sources taken from the context present in it.
func checkCopy(ctx context.Context, req Request, c *dockerfile.Copy, step dockerfile.Step) error {
	if err := dockerfile.CheckCopy(c); err != nil {
		return err
	}
	if c.From != "" {
		return nil // checked against the stage or image when the step runs
	}
	var local []string
	for _, s := range c.Sources {
		if !dockerfile.IsURL(s) {
			if err := insideContext(s); err != nil {
				return err
			}
			local = append(local, s)
		}
	}
	if len(local) == 0 {
		return nil
	}
	if req.Context == nil {
		return errors.New("there is no build context to copy from (the Dockerfile came from stdin with no context)")
	}
	if err := copier.Check(copier.Source{Root: req.Context.Dir(), Ignore: req.Context.Ignore()}, local); err != nil {
		return fmt.Errorf("%w in the build context", err)
	}
	return nil
}

// insideContext refuses a context source that climbs above the context's
// root ("../x"): BuildKit would quietly read "x" at the root instead, the
// classic builder refused it; a clear error is what a user expects.
func insideContext(src string) error {
	if clean := path.Clean(src); clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("source %s is outside the build context (sources are paths inside it; a leading / is its root)", src)
	}
	return nil
}

// copy is COPY and ADD: the sources written into a snapshot of st,
// committed as a layer.
func (r *stepRun) copy(ctx context.Context, st State, c *dockerfile.Copy) (_ State, err error) {
	if err := dockerfile.CheckCopy(c); err != nil {
		return st, err
	}
	chmod, err := dockerfile.ParseChmod(c.Chmod)
	if err != nil {
		return st, err
	}
	sources, cleanup, err := r.copySources(ctx, c)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	dest, err := system.NormalizePath(st.workdir(), c.Dest, "linux", true)
	if err != nil {
		return st, err
	}
	if c.Dest == "." || c.Dest == "" {
		dest = strings.TrimSuffix(st.workdir(), "/") + "/"
	}
	key, err := r.copyKey(ctx, st, c, dest, sources)
	if err != nil {
		return st, err
	}
	hit, ok, release, err := r.cached(ctx, st, key, copyHistory(c))
	if err != nil || ok {
		return hit, err
	}
	defer func() { r.afterCommit(release) }()
	start := time.Now()
	var total copier.Result
	st, commit, err := r.inSnapshot(ctx, st, key, nil, func(snap *snapshot.Snapshot) error {
		opts := copier.Options{Dest: dest, Chmod: chmod, Excludes: c.Excludes, Parents: c.Parents}
		if c.Chown != "" {
			uid, gid, err := resolveChown(ctx, snap.Dir, c.Chown)
			if err != nil {
				return err
			}
			opts.Chown = &copier.Owner{UID: uid, GID: gid}
		}
		for _, s := range sources {
			o := opts
			o.Sources, o.Unpack = s.paths, s.unpack
			res, err := copier.Copy(ctx, s.src, snap.Dir, o)
			if err != nil {
				return err
			}
			total.Files += res.Files
			total.Bytes += res.Bytes
		}
		r.event(Event{Kind: FilesCopied, Files: total.Files, Bytes: total.Bytes, Duration: time.Since(start)})
		return nil
	})
	if err != nil {
		return st, err
	}
	return st.withHistory(copyHistory(c), commit.Empty), nil
}

// copySource is one tree COPY/ADD reads, with the paths it takes from it,
// and what stands for its contents in the cache key: a stage's key or an
// image's ID (ref), a fetched file's digest, or nothing (its files are
// hashed).
type copySource struct {
	src    copier.Source
	paths  []string
	unpack bool
	ref    string
	digest digest.Digest
}

// copySources gathers what a COPY/ADD reads: the context (or a stage's or
// image's files for --from), fetched URLs, heredoc files. The cleanup
// removes views and temporary files.
func (r *stepRun) copySources(ctx context.Context, c *dockerfile.Copy) ([]copySource, func() error, error) {
	var cleanups []func() error
	cleanup := func() error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) ([]copySource, func() error, error) { return nil, nil, errors.Join(err, cleanup()) }
	var out []copySource
	var local, urls []string
	for _, s := range c.Sources {
		if dockerfile.IsURL(s) {
			urls = append(urls, s)
		} else {
			local = append(local, s)
		}
	}
	unpack := c.Add
	if c.Unpack != nil {
		unpack = *c.Unpack
	}
	if len(local) > 0 {
		src, release, err := r.localSource(ctx, c)
		if err != nil {
			return fail(err)
		}
		cleanups = append(cleanups, release)
		cs := copySource{src: src, paths: local, unpack: unpack}
		if c.From != "" {
			if cs.ref, err = r.fromRef(ctx, c.From, c.FromStage); err != nil {
				return fail(err)
			}
		}
		out = append(out, cs)
	}
	if len(urls) > 0 || len(c.Inline) > 0 {
		dir, err := os.MkdirTemp(r.b.deps.TempDir, r.key("files")+"-")
		if err != nil {
			return fail(err)
		}
		cleanups = append(cleanups, func() error { return os.RemoveAll(dir) })
		names, sums, err := r.fetchAll(ctx, dir, urls, c.Checksum)
		if err != nil {
			return fail(err)
		}
		urlUnpack := c.Unpack != nil && *c.Unpack
		for i, name := range names {
			out = append(out, copySource{src: copier.Source{Root: dir}, paths: []string{name}, unpack: urlUnpack, digest: sums[i]})
		}
		inline, err := writeInline(dir, c.Inline)
		if err != nil {
			return fail(err)
		}
		if len(inline) > 0 {
			// The heredocs' text is in the key's definition already.
			out = append(out, copySource{src: copier.Source{Root: dir}, paths: inline, digest: digest.FromString("inline")})
		}
	}
	return out, cleanup, nil
}

// localSource is the tree local sources come from: the build context, or a
// read-only view of the --from stage's or image's layers.
func (r *stepRun) localSource(ctx context.Context, c *dockerfile.Copy) (copier.Source, func() error, error) {
	if c.From == "" {
		if r.b.req.Context == nil {
			return copier.Source{}, nil, errors.New("there is no build context to copy from")
		}
		return copier.Source{Root: r.b.req.Context.Dir(), Ignore: r.b.req.Context.Ignore()}, func() error { return nil }, nil
	}
	top, err := r.fromTop(ctx, c.From, c.FromStage)
	if err != nil {
		return copier.Source{}, nil, err
	}
	key := r.key("from")
	view, err := r.b.deps.Snaps.View(ctx, key, top)
	if err != nil {
		return copier.Source{}, nil, fmt.Errorf("--from=%s: %w", c.From, err)
	}
	// Files from a stage or an image keep their owners (BuildKit).
	return copier.Source{Root: view.Dir, KeepOwners: true}, func() error { return r.b.deps.Snaps.Remove(context.Background(), key) }, nil
}

// writeInline writes COPY <<EOF sources as files (mode 0644, BuildKit's)
// named after their heredoc, in their own subdirectory so names cannot
// clash with fetched files.
func writeInline(dir string, files []dockerfile.InlineFile) ([]string, error) {
	var names []string
	for i, f := range files {
		sub := filepath.Join(dir, "inline-"+strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			return nil, err
		}
		name := filepath.Base(filepath.Clean("/" + f.Name))
		if err := os.WriteFile(filepath.Join(sub, name), []byte(f.Data), 0o644); err != nil {
			return nil, fmt.Errorf("writing heredoc %s: %w", f.Name, err)
		}
		if err := os.Chmod(filepath.Join(sub, name), 0o644); err != nil {
			return nil, err
		}
		names = append(names, filepath.Join("inline-"+strconv.Itoa(i), name))
	}
	return names, nil
}

// copyHistory is BuildKit's commit message for COPY/ADD.
func copyHistory(c *dockerfile.Copy) string {
	var b strings.Builder
	if c.Add {
		b.WriteString("ADD")
	} else {
		b.WriteString("COPY")
	}
	if c.Parents {
		b.WriteString(" --parents")
	}
	if c.Chown != "" {
		b.WriteString(" --chown=" + c.Chown)
	}
	if c.Chmod != "" {
		b.WriteString(" --chmod=" + c.Chmod)
	}
	for _, s := range c.Sources {
		b.WriteString(" " + s)
	}
	for _, f := range c.Inline {
		b.WriteString(" <<" + f.Name)
	}
	b.WriteString(" " + c.Dest)
	return b.String()
}

// fetchAll downloads ADD's URLs into dir, each in a subdirectory of its
// own (two URLs may have the same base name), and returns the paths
// relative to dir.
func (r *stepRun) fetchAll(ctx context.Context, dir string, urls []string, checksum string) ([]string, []digest.Digest, error) {
	var names []string
	var sums []digest.Digest
	for i, u := range urls {
		sub := filepath.Join(dir, "url-"+strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			return nil, nil, err
		}
		var want digest.Digest
		if checksum != "" {
			want = digest.Digest(checksum)
		}
		res, err := fetch.Fetch(ctx, u, want, sub)
		if err != nil {
			return nil, nil, err
		}
		rel, err := filepath.Rel(dir, res.Path)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, rel)
		sums = append(sums, res.Digest)
	}
	return names, sums, nil
}
