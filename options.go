package stepexec

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Option configures Open and Main. An option that cannot apply (a bad
// value) makes them fail with its error.
type Option func(*options) error

type options struct {
	root, runRoot string
	mode          Mode
}

func applyOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

// WithRoot sets the store's graph root (default: containers/storage's, e.g.
// ~/.local/share/containers/storage for a rootless user, or the
// graphroot of $CONTAINERS_STORAGE_CONF).
func WithRoot(dir string) Option {
	return func(o *options) (err error) {
		o.root, err = absDir("WithRoot", dir)
		return err
	}
}

// WithRunRoot sets the store's run root (locks and mount state; default
// podman's for this user).
func WithRunRoot(dir string) Option {
	return func(o *options) (err error) {
		o.runRoot, err = absDir("WithRunRoot", dir)
		return err
	}
}

// WithMode sets the mode Main enters the namespace with (default SubIDs).
func WithMode(m Mode) Option {
	return func(o *options) error {
		if m != SubIDs && m != SingleUID {
			return fmt.Errorf("stepexec: WithMode(%v): want SubIDs or SingleUID", m)
		}
		o.mode = m
		return nil
	}
}

// absDir makes a store directory absolute, as containers/storage needs.
func absDir(opt, dir string) (string, error) {
	if dir == "" {
		return "", errors.New("stepexec: " + opt + ": empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("stepexec: %s(%q): %w", opt, dir, err)
	}
	return abs, nil
}
