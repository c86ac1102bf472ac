package dockerfile

import (
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Command is one instruction of a stage after its FROM: one of the types
// below. Words are as written (quotes and variables unexpanded); the
// Expander gives the expanded form an instruction has when it runs, as
// BuildKit expands each instruction with the stage's variables at that
// point. Commands are never modified once parsed.
type Command interface{ isCommand() }

// Run runs a command in the image being built.
//
// Shell form sets Shell and Script, run with the stage's SHELL (default
// /bin/sh -c); exec form sets Args, run as is. Heredocs follow BuildKit's
// dispatchRun: a lone heredoc is the script itself, or, when it starts with
// "#!", File (an executable file the step runs); a heredoc inside a longer
// command line is handed to the shell whole.
type Run struct {
	Shell  bool
	Script string
	Args   []string
	File   *InlineFile // a "#!" heredoc to write and run, or nil

	Network  string // --network: "" or "default" (the build's), "none", "host"
	Security string // --security: "" or "sandbox" ("insecure" is refused)
	// Mounts are the --mount flags, unexpanded: Expander.Mounts parses them
	// with the step's variables.
	Mounts []MountFlag

	node *parser.Node // re-parsed by Expander.Mounts
}

// MountFlag is one RUN --mount, as written, with its from= reference
// resolved when it names a stage.
type MountFlag struct {
	Raw       string
	From      string // from= as written ("" when none)
	FromStage *Stage // the stage from= names, or nil (an image, or none)
}

// Mount is a RUN --mount after expansion (BuildKit's instructions.Mount).
type Mount struct {
	Type      string // bind, cache, tmpfs, secret, ssh
	From      string
	FromStage *Stage
	Source    string
	Target    string
	ReadOnly  bool
	SizeLimit int64   // tmpfs size=
	ID        string  // cache and secret id=
	Sharing   string  // cache sharing=: shared, private, locked
	Required  bool    // secret required=
	Env       *string // secret env=: the variable to set; nil for none
	Mode      *uint32
	UID, GID  *uint32
}

// InlineFile is a heredoc used as a file: RUN's "#!" script, or a source
// of COPY/ADD <<EOF.
type InlineFile struct {
	Name   string // the heredoc's delimiter word, its file name for COPY
	Data   string
	Expand bool // unquoted delimiter: variables in Data are expanded (COPY/ADD only)
}

// Copy is COPY, or ADD when Add is set.
type Copy struct {
	Add      bool
	Sources  []string     // paths, globs or (ADD) URLs
	Inline   []InlineFile // <<EOF sources
	Dest     string
	From     string // --from as written (COPY only)
	Chown    string
	Chmod    string
	Link     bool
	Parents  bool
	Excludes []string
	Checksum string // ADD --checksum
	Unpack   *bool  // ADD --unpack: nil = the default (extract local archives)
	KeepGit  *bool  // ADD --keep-git-dir

	// FromStage is the stage --from names, nil when it names an image or
	// is empty (the build context).
	FromStage *Stage
}

// Env sets environment variables (ENV, both forms).
type Env struct{ Pairs []KeyValue }

// Label sets image labels.
type Label struct{ Pairs []KeyValue }

// Maintainer is the deprecated MAINTAINER, stored as the label docker sets.
type Maintainer struct{ Name string }

// Expose records ports ("80", "53/udp", ranges "8000-8010/tcp").
type Expose struct{ Ports []string }

// Volume records mount points.
type Volume struct{ Paths []string }

// StopSignal sets the signal that stops a container.
type StopSignal struct{ Signal string }

// Healthcheck sets (or with Test ["NONE"] disables) the health check, in
// the form docker stores it.
type Healthcheck struct {
	Test          []string // ["NONE"], ["CMD", args…] or ["CMD-SHELL", line]
	Interval      time.Duration
	Timeout       time.Duration
	StartPeriod   time.Duration
	StartInterval time.Duration
	Retries       int
}

// Shell sets the shell of later shell-form RUN, CMD and ENTRYPOINT.
type Shell struct{ Args []string }

// User sets the user (and group) of later RUNs and of the image.
type User struct{ Spec string }

// Workdir sets the working directory; a relative path is relative to the
// previous one.
type Workdir struct{ Path string }

// Cmd sets the image's default command. Shell form: Shell set, Args holds
// the one command line; the builder prepends the stage's shell.
type Cmd struct {
	Shell bool
	Args  []string
}

// Entrypoint sets the image's entrypoint, with the same forms as Cmd.
type Entrypoint struct {
	Shell bool
	Args  []string
}

// Onbuild records a trigger instruction for builds FROM this image.
type Onbuild struct{ Expression string }

// Arg declares build arguments of the stage, with optional defaults.
type Arg struct{ Args []ArgDef }

// ArgDef is one name of an ARG; Default is nil when none was given.
type ArgDef struct {
	Key     string
	Default *string
}

// KeyValue is one pair of ENV or LABEL, in the order written.
type KeyValue struct{ Key, Value string }

func (*Run) isCommand()         {}
func (*Copy) isCommand()        {}
func (*Env) isCommand()         {}
func (*Label) isCommand()       {}
func (*Maintainer) isCommand()  {}
func (*Expose) isCommand()      {}
func (*Volume) isCommand()      {}
func (*StopSignal) isCommand()  {}
func (*Healthcheck) isCommand() {}
func (*Shell) isCommand()       {}
func (*User) isCommand()        {}
func (*Workdir) isCommand()     {}
func (*Cmd) isCommand()         {}
func (*Entrypoint) isCommand()  {}
func (*Onbuild) isCommand()     {}
func (*Arg) isCommand()         {}

// Step is one instruction of a stage after its FROM.
type Step struct {
	Location Location
	// Text is the instruction as written, continuation lines joined and
	// heredoc bodies left out, e.g. `RUN apk add foo`.
	Text    string
	Command Command
	// OnBuild marks a trigger inherited from the base image's ONBUILD.
	OnBuild bool
}
