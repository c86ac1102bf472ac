// TEMPORARY on the f/frontend branch: the contract of internal/copier
// (being written on h/copier) so that the engine compiles; replaced by the
// real package before merging.
package copier

import (
	"context"
	"errors"

	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/dockerfile"
)

type Source struct {
	Root   string
	Ignore *patternmatcher.PatternMatcher
}

type Owner struct{ UID, GID int }

type Options struct {
	Sources  []string
	Dest     string
	Chown    *Owner
	Chmod    *dockerfile.Chmod
	Excludes []string
	Parents  bool
	Unpack   bool
}

type Result struct {
	Digest digest.Digest
	Files  int
	Bytes  int64
}

var errTODO = errors.New("copier: not merged yet")

func Copy(ctx context.Context, src Source, destRoot string, opts Options) (Result, error) {
	return Result{}, errTODO
}

func Check(src Source, sources []string) error { return nil }
