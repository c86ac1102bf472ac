package copier

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"strconv"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// recorder hashes a canonical description of what is copied. Each record
// is a sequence of length-prefixed fields, so no path or link target can
// be confused with another field. Times and inode numbers never enter it;
// hardlinks enter as the path they link to.
type recorder struct {
	h   hash.Hash
	buf []byte
}

const digestVersion = "stepexec-copy-v1"

var emptySum = sha256.Sum256(nil)

func newRecorder() *recorder {
	r := &recorder{h: sha256.New()}
	r.field(digestVersion)
	return r
}

func (r *recorder) field(s string) {
	r.buf = binary.AppendUvarint(r.buf[:0], uint64(len(s)))
	r.buf = append(r.buf, s...)
	r.h.Write(r.buf)
}

func (r *recorder) num(n int64) { r.field(strconv.FormatInt(n, 10)) }

// match starts a source match: its name as named (the base of a file
// match names the destination) and whether its contents or itself are copied.
func (r *recorder) match(name string, kind byte) {
	r.field("match")
	r.field(name)
	r.field(string(kind))
}

// entry records one entry; sum is a regular file's content digest.
func (r *recorder) entry(e *entry, sum []byte) {
	r.field("entry")
	r.field(e.rel)
	kind := typeChar(e)
	r.field(string(kind))
	r.num(int64(e.mode))
	r.num(int64(e.uid))
	r.num(int64(e.gid))
	switch kind {
	case 'l':
		r.field(e.link)
	case 'h':
		r.field(e.hardlink)
	case 'c', 'b':
		r.num(int64(e.st.Rdev))
	case 'f':
		if e.kind() == unix.S_IFSOCK {
			sum = emptySum[:]
		}
		r.field(string(sum))
	}
	r.num(int64(len(e.xattrs)))
	for _, x := range e.xattrs {
		r.field(x.name)
		r.field(string(x.value))
	}
}

// archive records a file match extracted by ADD: its content, and the
// owner its entries get (--chown, else the archive's own).
func (r *recorder) archive(e *entry, chown *Owner, sum []byte) {
	r.field("archive")
	r.field(string(sum))
	if chown == nil {
		r.field("archive owners")
	} else {
		r.num(int64(chown.UID))
		r.num(int64(chown.GID))
	}
}

func (r *recorder) digest() digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, r.h.Sum(nil))
}

// typeChar names an entry's type as the destination gets it: a socket
// becomes an empty regular file (fsutil's copyDevice).
func typeChar(e *entry) byte {
	if e.hardlink != "" {
		return 'h'
	}
	switch e.kind() {
	case unix.S_IFDIR:
		return 'd'
	case unix.S_IFLNK:
		return 'l'
	case unix.S_IFCHR:
		return 'c'
	case unix.S_IFBLK:
		return 'b'
	case unix.S_IFIFO:
		return 'p'
	}
	return 'f' // regular files and sockets
}
