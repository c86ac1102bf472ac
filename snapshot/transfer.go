package snapshot

import (
	"io"

	"go.podman.io/storage"
)

// ForTransfer returns the store for a copy by go.podman.io/image into or
// out of it (a registry pull or push), keeping this package's GC rules:
// every layer the copy creates is held by lease from before it exists and
// carries MadeFlag, and every layer it finds already there is held from
// the lookup on. So a pull that fails midway leaves no layer once lease is
// released (its Release deletes the layers nothing keeps), a killed one
// none after the next Open, and no concurrent prune deletes a layer a
// pull is about to reuse.
func (s *Store) ForTransfer(lease *Lease) storage.Store {
	return transferStore{Store: s.store, lease: lease}
}

// transferStore is the store with its layer-creating and layer-finding
// methods guarded; everything else is the store's own.
type transferStore struct {
	storage.Store
	lease *Lease
}

func (t transferStore) hold(id string) error { return t.lease.holdNew(id) }

// made returns opts (or new options) with MadeFlag set, leaving the
// caller's value untouched.
func made(opts *storage.LayerOptions) *storage.LayerOptions {
	var o storage.LayerOptions
	if opts != nil {
		o = *opts
	}
	flags := map[string]any{MadeFlag: true}
	for k, v := range o.Flags {
		flags[k] = v
	}
	o.Flags = flags
	return &o
}

func (t transferStore) PutLayer(id, parent string, names []string, mountLabel string, writeable bool, opts *storage.LayerOptions, diff io.Reader) (*storage.Layer, int64, error) {
	if err := t.hold(id); err != nil {
		return nil, -1, err
	}
	return t.Store.PutLayer(id, parent, names, mountLabel, writeable, made(opts), diff)
}

func (t transferStore) CreateLayer(id, parent string, names []string, mountLabel string, writeable bool, opts *storage.LayerOptions) (*storage.Layer, error) {
	if err := t.hold(id); err != nil {
		return nil, err
	}
	return t.Store.CreateLayer(id, parent, names, mountLabel, writeable, made(opts))
}

func (t transferStore) ApplyStagedLayer(args storage.ApplyStagedLayerOptions) (*storage.Layer, error) {
	if err := t.hold(args.ID); err != nil {
		return nil, err
	}
	args.LayerOptions = made(args.LayerOptions)
	return t.Store.ApplyStagedLayer(args)
}

func (t transferStore) Layer(id string) (*storage.Layer, error) {
	var l *storage.Layer
	_, err := t.lease.Hold(func() (string, error) {
		var err error
		if l, err = t.Store.Layer(id); err != nil {
			return "", err
		}
		return l.ID, nil
	})
	return l, err
}
