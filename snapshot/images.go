package snapshot

import "go.podman.io/storage"

// ImageRecords is the image half of the store, for package image (its
// image.Records): image records with their big data (config, manifest)
// and names, and read-only layer lookups. Layers are made and deleted,
// and images deleted, only through the Store, which keeps the GC rules.
type ImageRecords struct{ s storage.Store }

// ImageRecords returns the store's image records.
func (s *Store) ImageRecords() ImageRecords { return ImageRecords{s.store} }

// Image looks up an image by ID or name.
func (r ImageRecords) Image(id string) (*storage.Image, error) { return r.s.Image(id) }

// Images lists every image of the store.
func (r ImageRecords) Images() ([]storage.Image, error) { return r.s.Images() }

// CreateImage records an image whose top layer is layer.
func (r ImageRecords) CreateImage(id string, names []string, layer, metadata string, opts *storage.ImageOptions) (*storage.Image, error) {
	return r.s.CreateImage(id, names, layer, metadata, opts)
}

// ImageBigData reads an image's big data item key.
func (r ImageRecords) ImageBigData(id, key string) ([]byte, error) { return r.s.ImageBigData(id, key) }

// AddNames names image id (never a layer or container).
func (r ImageRecords) AddNames(id string, names []string) error {
	img, err := r.s.Image(id)
	if err != nil {
		return err
	}
	return r.s.AddNames(img.ID, names)
}

// RemoveNames untags image id (never a layer or container).
func (r ImageRecords) RemoveNames(id string, names []string) error {
	img, err := r.s.Image(id)
	if err != nil {
		return err
	}
	return r.s.RemoveNames(img.ID, names)
}

// Layer looks up a layer.
func (r ImageRecords) Layer(id string) (*storage.Layer, error) { return r.s.Layer(id) }
