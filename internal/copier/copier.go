// Package copier implements COPY and ADD of local files: copying from a
// source directory (the build context, or a read-only view of a stage or
// image) into an image root filesystem, with BuildKit's semantics, and the
// content digest the layer cache keys on.
//
// BuildKit is the reference: its Dockerfile frontend turns COPY into a
// FileOp copy with FollowSymlinks, CopyDirContentsOnly, AllowWildcard,
// AllowEmptyWildcard and CreateDestPath, which its file backend runs with
// fsutil's copy package. The rules below, and where each comes from, are
// listed in doc.go.
//
// Terms: a source is one COPY argument; a match is a path a source names
// (several for a wildcard); an entry is a file, directory, symlink, … below
// or at a match.
package copier

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/dockerfile"
)

// Source is a directory to copy from.
type Source struct {
	// Root is the directory to copy from: the context dir, or a read-only
	// view of a stage or image rootfs. Sources are resolved inside it as
	// in a chroot.
	Root string
	// Ignore holds the .dockerignore rules (the context only; nil = none).
	// An ignored path is absent, as BuildKit never transfers it.
	Ignore *patternmatcher.PatternMatcher
	// KeepOwners keeps each entry's uid/gid when Options.Chown is nil, as
	// BuildKit does for COPY --from a stage or image. The build context
	// leaves it false: BuildKit's client sends context files as 0:0.
	KeepOwners bool
}

// Owner is a numeric uid:gid, as seen by the process that runs Copy.
type Owner struct{ UID, GID int }

// Options describe one COPY or ADD of local sources.
type Options struct {
	// Sources are paths relative to Root after variable expansion (a
	// leading "/" is allowed; ".." stops at Root). They may hold
	// wildcards, matched per path element as BuildKit does.
	Sources []string
	// Dest is the absolute destination in the rootfs, resolved against
	// WORKDIR by the caller, keeping a trailing "/" (or "/.").
	Dest string
	// Chown owns the copied entries (and the directories Copy creates);
	// nil = 0:0, or the source's owners with Source.KeepOwners.
	Chown *Owner
	// Chmod sets the mode of every copied file and directory (not
	// symlinks); an octal --chmod also sets the created parent directories.
	// nil keeps the source modes.
	Chmod *dockerfile.Chmod
	// Excludes are --exclude patterns (.dockerignore syntax), matched
	// below each source directory.
	Excludes []string
	// Parents is --parents: each source keeps its path from Root, or from
	// a "/./" pivot in it.
	Parents bool
	// Unpack is ADD of local files: a match that is a tar archive (plain,
	// gzip, bzip2, xz or zstd) is extracted into Dest; other files are
	// copied.
	Unpack bool
}

// Result tells what a Copy did.
type Result struct {
	// Digest identifies what was copied (see Checksum).
	Digest digest.Digest
	// Files counts the entries written: files, links, device nodes,
	// directories copied or extracted (not the parent directories created
	// for them).
	Files int
	// Bytes counts regular file content written.
	Bytes int64
	// SkippedDevices counts device nodes not created because mknod was
	// refused (EPERM: a rootless build), as rootless podman does.
	SkippedDevices int
}

// Copy copies the sources into destRoot (an image rootfs, such as a
// snapshot's merged directory) as COPY/ADD does. Every write is resolved
// inside destRoot: symlinks in the image, absolute or relative, are
// followed as in a chroot and cannot lead a write outside it.
//
// On error destRoot may hold part of the copy; the caller discards the
// snapshot. Errors name the source or destination path.
func Copy(ctx context.Context, src Source, destRoot string, opts Options) (Result, error) {
	dest, err := openRoot(destRoot)
	if err != nil {
		return Result{}, err
	}
	defer dest.Close()
	w := newWriter(ctx, dest, &opts)
	defer w.close()
	dgst, err := run(ctx, src, &opts, w)
	w.res.Digest = dgst
	return w.res, err
}

// Checksum returns the digest Copy would return for the same source tree
// and options, reading the sources without copying. It covers, for each
// match in order, its name, and for each entry selected (after
// .dockerignore, --exclude and --parents): its path, type, mode after
// --chmod, owner after --chown, link target, xattrs and content; never
// times or inode numbers.
func Checksum(ctx context.Context, src Source, opts Options) (digest.Digest, error) {
	return run(ctx, src, &opts, &checksummer{})
}

// Check reports each source that names no wildcard and does not exist in
// src (or is excluded by .dockerignore), as BuildKit's cache key
// computation does before any copy. A wildcard that matches nothing is not
// an error. Errors name the source.
func Check(src Source, sources []string) error {
	r, err := openRoot(src.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	s := &sourceTree{root: r, ignore: src.Ignore}
	var errs []error
	for _, given := range sources {
		p := cleanSource(given)
		if containsWildcards(p) {
			continue
		}
		m, err := s.resolveMatch(given, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.close()
	}
	return errors.Join(errs...)
}

// run resolves each source and walks its matches, handing the entries to v.
func run(ctx context.Context, src Source, opts *Options, v visitor) (digest.Digest, error) {
	r, err := openRoot(src.Root)
	if err != nil {
		return "", err
	}
	defer r.Close()
	wk, err := newWalker(ctx, src, r, opts, v)
	if err != nil {
		return "", err
	}
	for _, sp := range specsOf(opts.Sources, opts.Parents) {
		matches, err := wk.tree.matches(sp)
		if err != nil {
			return "", err
		}
		for i, m := range matches {
			err := ctx.Err()
			if err == nil {
				err = wk.match(sp, m)
			}
			m.close()
			if err != nil {
				for _, rest := range matches[i+1:] {
					rest.close()
				}
				return "", fmt.Errorf("%s: %w", quoteSource(sp.given), err)
			}
		}
	}
	return wk.rec.digest(), nil
}
