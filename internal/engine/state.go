package engine

import (
	"maps"
	"slices"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/cache"
)

// defaultPath is the PATH BuildKit gives a stage whose base sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// historyComment marks the history entries stepexec writes.
const historyComment = "stepexec.dockerfile.v0"

// State is a stage's image as its steps build it: an immutable value.
// Every op returns a new State and leaves its input as it was, so that two
// stages FROM one stage, or a COPY --from reading a finished stage, share
// states without copying them. The variable scopes, labels and history are
// persistent structures (sharing their past), which keeps a stage of
// 10,000 ENV lines linear.
type State struct {
	cfg     dockerspec.DockerOCIImage // all but Env, Labels and History, which live below
	env     *dockerfile.Vars          // the image's ENV
	runEnv  *dockerfile.Vars          // ENV and ARG values: what expansion and RUN see
	labels  *dockerfile.Vars
	history *historyEntry
	layers  []image.Layer // base first; appended only through withLayer
	args    []stageArg    // the stage's ARG declarations, in order (RUN's history)
	cmdSet  bool          // CMD given in this stage: ENTRYPOINT keeps it
	// key is the build cache's key of this state (see cache.go); stamp is
	// when its top layer was made (the base image's creation before any),
	// the time of the history entries after it, so that a rebuild from
	// the cache gives the same config, and so the same image ID.
	key   cache.Key
	stamp time.Time
}

// stageArg is an ARG declaration of the stage; has says it got a value.
type stageArg struct {
	key, value string
	has        bool
}

type historyEntry struct {
	prev *historyEntry
	h    ocispec.History
}

// newState starts a stage from an image config and its layers.
func newState(img dockerspec.DockerOCIImage, layers []image.Layer) State {
	s := State{cfg: img, layers: slices.Clip(slices.Clone(layers))}
	if img.Created != nil {
		s.stamp = img.Created.UTC()
	}
	s.env = dockerfile.NewVars(img.Config.Env)
	if _, ok := s.env.Get("PATH"); !ok {
		s.env = s.env.With("PATH", defaultPath)
	}
	s.runEnv = s.env
	labels := make([]string, 0, len(img.Config.Labels))
	for _, k := range slices.Sorted(maps.Keys(img.Config.Labels)) {
		labels = append(labels, k+"="+img.Config.Labels[k])
	}
	s.labels = dockerfile.NewVars(labels)
	for _, h := range img.History {
		s.history = &historyEntry{prev: s.history, h: h}
	}
	s.cfg.Config.Env, s.cfg.Config.Labels, s.cfg.History = nil, nil, nil
	s.cfg.RootFS = ocispec.RootFS{}
	if s.cfg.OS == "" {
		s.cfg.OS = dockerfile.BuildPlatform.OS
	}
	if s.cfg.Architecture == "" {
		s.cfg.Architecture = dockerfile.BuildPlatform.Arch
	}
	return s
}

// scratchState is the empty image BuildKit starts FROM scratch with.
func scratchState() State {
	var img dockerspec.DockerOCIImage
	img.OS, img.Architecture = dockerfile.BuildPlatform.OS, dockerfile.BuildPlatform.Arch
	img.Config.WorkingDir = "/"
	return newState(img, nil)
}

// fromStage starts a stage FROM another stage's result: everything carries
// over but the CMD-given flag and the ARG declarations, which are per stage.
func fromStage(base State) State {
	s := base
	s.args = nil
	s.cmdSet = false
	return s
}

// Image returns the image config the state describes (history included,
// RootFS from its layers).
func (s State) Image() dockerspec.DockerOCIImage {
	img := s.cfg
	img.Config.Env = s.env.Environ()
	if s.labels.Len() > 0 {
		img.Config.Labels = map[string]string{}
		for _, kv := range s.labels.List() {
			img.Config.Labels[kv.Key] = kv.Value
		}
	}
	var hist []ocispec.History
	for h := s.history; h != nil; h = h.prev {
		hist = append(hist, h.h)
	}
	slices.Reverse(hist)
	img.History = hist
	img.RootFS = ocispec.RootFS{Type: "layers"}
	for _, l := range s.layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.DiffID)
	}
	return img
}

// Layers returns the state's layers, base first.
func (s State) Layers() []image.Layer { return slices.Clone(s.layers) }

// Top is the ID of the top layer, "" for none.
func (s State) Top() string {
	if len(s.layers) == 0 {
		return ""
	}
	return s.layers[len(s.layers)-1].ID
}

// Config returns the runtime config (without Env and Labels: see Env).
func (s State) Config() dockerspec.DockerOCIImageConfig { return s.cfg.Config }

// RunEnv is the environment expansion and RUN see: ENV plus ARG values.
func (s State) RunEnv() *dockerfile.Vars { return s.runEnv }

// withHistory adds a history entry; empty says the step made no layer. Its
// time is the state's stamp (none before any layer).
func (s State) withHistory(createdBy string, empty bool) State {
	var created *time.Time
	if !s.stamp.IsZero() {
		t := s.stamp
		created = &t
	}
	s.history = &historyEntry{prev: s.history, h: ocispec.History{
		Created: created, CreatedBy: createdBy, Comment: historyComment, EmptyLayer: empty,
	}}
	return s
}

// Stamp is when the state's last layer was made (zero if none was and the
// base image has no creation time).
func (s State) Stamp() time.Time { return s.stamp }

// Key is the state's build cache key.
func (s State) Key() cache.Key { return s.key }

// withLayer adds a layer on top.
func (s State) withLayer(l image.Layer) State {
	s.layers = append(slices.Clip(s.layers), l)
	return s
}

// withEnv sets an ENV variable (in the image and for later steps).
func (s State) withEnv(k, v string) State {
	s.env = s.env.With(k, v)
	s.runEnv = s.runEnv.With(k, v)
	return s
}

// withArg declares an ARG; when has, its value is set for later steps (not
// in the image).
func (s State) withArg(k, v string, has bool) State {
	if has {
		s.runEnv = s.runEnv.With(k, v)
	}
	s.args = append(slices.Clip(s.args), stageArg{key: k, value: v, has: has})
	return s
}

// withConfig returns s with the runtime config changed by f, which gets a
// copy it may modify (maps and slices included).
func (s State) withConfig(f func(c *dockerspec.DockerOCIImageConfig)) State {
	c := s.cfg.Config
	c.Cmd = slices.Clone(c.Cmd)
	c.Entrypoint = slices.Clone(c.Entrypoint)
	c.Shell = slices.Clone(c.Shell)
	c.OnBuild = slices.Clone(c.OnBuild)
	c.ExposedPorts = maps.Clone(c.ExposedPorts)
	c.Volumes = maps.Clone(c.Volumes)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = slices.Clone(h.Test)
		c.Healthcheck = &h
	}
	f(&c)
	s.cfg.Config = c
	return s
}

// shell is the stage's shell for shell-form commands.
func (s State) shell() []string {
	if len(s.cfg.Config.Shell) > 0 {
		return slices.Clone(s.cfg.Config.Shell)
	}
	return []string{"/bin/sh", "-c"}
}

// workdir is the working directory steps run in.
func (s State) workdir() string {
	if s.cfg.Config.WorkingDir == "" {
		return "/"
	}
	return s.cfg.Config.WorkingDir
}
