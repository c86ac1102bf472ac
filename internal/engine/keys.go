package engine

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/internal/copier"
)

// runDef is what a RUN's result depends on besides its parent's layers,
// as BuildKit's ExecOp cache map has it: the command, the whole
// environment it gets (the proxy build args excluded, as BuildKit does),
// who and where it runs, its network mode and its mounts' definitions
// (never a secret's or a cache's contents).
type runDef struct {
	Args     []string
	Env      []string
	User     string
	Cwd      string
	Network  string
	Security string
	Script   string `json:",omitempty"` // a "#!" heredoc's body
	Mounts   []mountDef
}

type mountDef struct {
	Type, Target, Source string
	From                 string `json:",omitempty"` // the stage's cache key or the image ID
	ReadOnly             bool
	ID, Sharing          string `json:",omitempty"`
	Size                 int64  `json:",omitempty"`
	Mode, UID, GID       *uint32
	Required             bool
	Env                  *string
}

// runKey is the cache key of a RUN on st, with its bind mounts' sources
// (the context's files, or a stage's key) among its inputs.
func (r *stepRun) runKey(ctx context.Context, st State, c *dockerfile.Run, args []string, ms []dockerfile.Mount) (cache.Key, error) {
	def := runDef{Args: args, Env: st.RunEnv().Environ(), User: st.Config().User, Cwd: st.workdir(),
		Network: r.networkMode(c), Security: c.Security}
	if c.File != nil {
		def.Script = c.File.Data
	}
	var inputs []digest.Digest
	for _, m := range ms {
		md := mountDef{Type: m.Type, Target: m.Target, Source: m.Source, ReadOnly: m.ReadOnly, ID: m.ID,
			Sharing: m.Sharing, Size: m.SizeLimit, Mode: m.Mode, UID: m.UID, GID: m.GID, Required: m.Required, Env: m.Env}
		if m.Type == "bind" {
			if m.From != "" {
				ref, err := r.fromRef(ctx, m.From, m.FromStage)
				if err != nil {
					return "", err
				}
				md.From = ref
			} else {
				d, err := copier.Checksum(ctx, copier.Source{Root: r.b.req.Context.Dir(), Ignore: r.b.req.Context.Ignore()},
					copier.Options{Sources: []string{m.Source}, Dest: "/"})
				if err != nil {
					return "", fmt.Errorf("--mount=type=bind,source=%s: %w", m.Source, err)
				}
				inputs = append(inputs, d)
			}
		}
		def.Mounts = append(def.Mounts, md)
	}
	return cache.Chain(st.key, "run", def, inputs...)
}

// fromRef names what a --from or from= reads, for a key: the stage's
// cache key and its top layer (a stage built from the same inputs has the
// same key; a stage rebuilt under --no-cache-filter keeps its key but not
// its layer), or the image's ID.
func (r *stepRun) fromRef(ctx context.Context, ref string, stage *dockerfile.Stage) (string, error) {
	if stage != nil {
		st, err := r.b.wait(ctx, stage)
		if err != nil {
			return "", err
		}
		top := ""
		if ls := st.Layers(); len(ls) > 0 {
			top = ls[len(ls)-1].DiffID.String()
		}
		return "stage:" + string(st.key) + "@" + top, nil
	}
	img := r.p.images[ref]
	if img == nil {
		return "", fmt.Errorf("image %s was not resolved", ref)
	}
	return "image:" + img.ID, nil
}

// copyDef is what a COPY/ADD's result depends on besides its parent's
// layers and its sources' contents (the inputs).
type copyDef struct {
	Add                      bool
	Sources                  []string
	Inline                   []dockerfile.InlineFile
	Dest, Chown, Chmod, From string
	Link, Parents            bool
	Excludes                 []string
	Checksum                 string
	Unpack                   *bool
}

// copyKey is the cache key of a COPY/ADD on st whose sources are srcs:
// the context's selected files are hashed (paths, types, modes, link
// targets, bytes; never times), fetched URLs by their content, a stage by
// its key.
func (r *stepRun) copyKey(ctx context.Context, st State, c *dockerfile.Copy, dest string, srcs []copySource) (cache.Key, error) {
	def := copyDef{Add: c.Add, Sources: c.Sources, Inline: c.Inline, Dest: dest, Chown: c.Chown, Chmod: c.Chmod,
		Link: c.Link, Parents: c.Parents, Excludes: c.Excludes, Checksum: c.Checksum, Unpack: c.Unpack}
	var inputs []digest.Digest
	for _, s := range srcs {
		switch {
		case s.ref != "":
			def.From = s.ref
		case s.digest != "":
			inputs = append(inputs, s.digest)
		default:
			d, err := copier.Checksum(ctx, s.src, copier.Options{Sources: s.paths, Dest: dest, Excludes: c.Excludes, Parents: c.Parents, Unpack: s.unpack})
			if err != nil {
				return "", err
			}
			inputs = append(inputs, d)
		}
	}
	return cache.Chain(st.key, "copy", def, inputs...)
}
