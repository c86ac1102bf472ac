package copier

// The rules, and where in BuildKit v0.34.2 each comes from (dockerfile2llb
// = frontend/dockerfile/dockerfile2llb/convert_copy.go, backend =
// solver/llbsolver/file/backend.go and unpack.go, fsutil = tonistiigi/fsutil
// copy/copy.go; tests are frontend/dockerfile/dockerfile_*_test.go):
//
// Sources
//   - A source is cleaned and rooted (path.Join("/", path.Clean(s)), llb's
//     sourcePath): ".." stops at Root, a trailing "/" or "/." is dropped.
//   - Symlinks in a source path, the last one included, are followed inside
//     Root as in a chroot (FollowSymlinks; continuity's RootPath). A plain
//     source that does not exist is an error (the checksum's "not found"),
//     so is one behind a dangling symlink. testCopyThroughSymlinkContext,
//     testCopyThroughSymlinkMultiStage, testCopySymlinks.
//   - Wildcards (*, ? and [ not escaped) are matched element by element
//     below the longest plain prefix, which must exist; symlinks on the way
//     are not followed while matching, matched symlinks are; a matched
//     directory is not searched further; matches are in lexical order
//     (fsutil ResolveWildcards). Matching nothing is not an error
//     (AllowEmptyWildcard; testEmptyWildcard).
//   - A directory gives its contents (CopyDirContentsOnly); the directory
//     itself is not copied: an existing destination keeps its mode and
//     owner, a new one is created 0755 (or the octal --chmod) and takes the
//     source's times only. testCopyWildcards, testCopyChownExistingDir.
//   - .dockerignore: an ignored path is absent (BuildKit never transfers
//     it), also behind a symlink; "!" exceptions keep entries of ignored
//     directories, which are then created.
//
// Destination (fsutil Copy and prepareTargetDir)
//   - Dest is resolved inside destRoot following symlinks, the last one
//     too (fs.RootPath): "/link" to a file replaces that file; "/link/" to
//     a missing directory creates it. testSymlinkDestination.
//   - The directory Dest is in (Dest itself when it ends with "/" or "/.")
//     is created; missing directories get 0755, or an octal --chmod's
//     permission bits (testCopyChmod /parent), and --chown's owner, else
//     the creator's (root).
//   - A file goes to Dest/<base of its name> when Dest is an existing
//     directory, else to Dest. An existing file or symlink there is
//     replaced, never written through; a directory there is an error
//     (ensureEmptyFileTarget). A directory merges into an existing one;
//     onto a non-directory (a symlink included) it is an error
//     (copyDirectoryOnly).
//   - Several sources to a Dest without "/" are fine as BuildKit has it
//     (directories merge, files land in an existing directory), except
//     that two files copied to the same file name are an error: BuildKit
//     silently keeps the last (moby/buildkit#1853), the classic builder and
//     buildah refuse.
//
// Entries
//   - Modes are kept, special bits included; --chmod (octal, or symbolic
//     with dockerfile.Chmod) applies to every copied file and directory,
//     not to symlinks (fsutil copyFileInfo; testCopyChmod,
//     testChmodNonOctal). A directory's mode is set after its entries.
//   - Owner: --chown; else the source's own for Source.KeepOwners (a stage
//     or image: fsutil's Chowner gets the source owner); else 0:0 (the
//     client sends context files as 0:0: client/solve.go resetUIDAndGID).
//   - Times (atime and mtime) are kept, directories' set after their
//     entries (copyFileTimestamp).
//   - Symlinks below a copied directory are copied as symlinks
//     (testCopyFollowAllSymlinks). Hardlinks among the entries of one match
//     stay hardlinks (fsutil's inode map is per copy call, so one per
//     match). FIFOs are recreated; a socket becomes an empty regular file
//     (copyDevice, testCopySocket); device nodes are created, or skipped
//     and counted when mknod is refused (rootless; BuildKit fails there,
//     rootless podman skips).
//   - xattrs are copied, except security.selinux and overlayfs's own
//     (trusted.overlay.*, user.overlay.*); ones the destination refuses
//     (EPERM, ENOTSUP) are dropped, as BuildKit logs and goes on.
//   - --exclude patterns (.dockerignore syntax) are matched against paths
//     below each source directory, so a file named as a source is never
//     excluded (moby/buildkit#5489, fsutil passes "" for the source
//     itself); "!" exceptions bring entries back with their directories.
//     testExcludedFilesOnCopy.
//   - --parents: "parent/./rest" copies parent's contents selecting rest
//     (an include pattern, "**" allowed), without "/./" the whole path from
//     Root is kept; directories on the way are created with their source
//     metadata; a plain path must exist (RequiredPaths). testCopyParents,
//     testCopyRelativeParents, testCopyParentsMissingDirectory.
//
// ADD of local files (Unpack; backend unpack.go, go-archive Untar)
//   - A match that is a regular file whose content is a tar, plain or
//     gzip/bzip2/xz/zstd-compressed (magic numbers as go-archive's
//     compression.Detect, then a valid first tar header), is extracted; any
//     other file (a gzip of a non-tar, an empty file) is copied.
//   - Dest is then a directory (created 0755 with --chown), the archive's
//     root: absolute names, ".." and symlinks planted by earlier entries
//     resolve inside it (chrootarchive). Entries keep the archive's owners
//     unless --chown; --chmod does not apply; missing parents are 0755;
//     an existing entry is replaced unless both are directories; "." and
//     PAX global headers are skipped; whiteouts are ordinary files.
//     testDockerfileAddArchive*, testDockerfileAddChownArchive.
//
// Digest: see Checksum. It covers what is written, so it leaves out Dest
// and the destination's state, which the caller keys on.
