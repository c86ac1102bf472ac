// Package image keeps built images: their OCI config and manifest, stored in
// the containers/storage image store so that podman and buildah run by the
// same user see them, and written out as OCI image layouts.
//
// Terms: an image is a config (the OCI image config JSON) plus the chain of
// layers its rootfs lists; its ID is the hex sha256 of the config bytes, as
// in docker and podman. A name is a fully qualified reference
// ("localhost/hello:latest") that points at one image.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
)

// Layer is one layer of an image as the store knows it.
type Layer struct {
	ID     string        // containers/storage layer ID
	DiffID digest.Digest // sha256 of the uncompressed tar
	Size   int64         // uncompressed size
}

// Image is a stored image.
type Image struct {
	ID        string // hex config digest
	Names     []string
	Created   time.Time
	Config    dockerspec.DockerOCIImage // the OCI config plus docker's fields (Healthcheck, OnBuild, Shell)
	RawConfig []byte                    // the exact bytes whose digest is the ID
	TopLayer  string                    // containers/storage ID of the last layer, "" for none
	Size      int64                     // sum of the layers' uncompressed sizes
}

// ShortID is the 12-character ID shown in listings.
func (i Image) ShortID() string {
	if len(i.ID) > 12 {
		return i.ID[:12]
	}
	return i.ID
}

// Store reads and writes images in a containers/storage store.
type Store struct {
	s       Records
	deleter Deleter
}

// Records is the part of a containers/storage store images are kept in
// (go.podman.io/storage.Store has these methods; snapshot.Store hands out
// just these, as snapshot.ImageRecords): image records, their big data
// and names, and layer lookups for an image's chain and size.
type Records interface {
	Image(id string) (*storage.Image, error)
	Images() ([]storage.Image, error)
	CreateImage(id string, names []string, layer, metadata string, opts *storage.ImageOptions) (*storage.Image, error)
	ImageBigData(id, key string) ([]byte, error)
	AddNames(id string, names []string) error    // of an image
	RemoveNames(id string, names []string) error // of an image
	Layer(id string) (*storage.Layer, error)
}

// Deleter deletes an image record with the layers only it uses (package
// snapshot's Store, which keeps layers a running build holds).
type Deleter interface {
	// DeleteImage deletes image id, or, when a running build holds some
	// of its layers, removes its names and deletes it once the build is
	// done (kept is true).
	DeleteImage(id string) (kept bool, err error)
}

// NewStore keeps images in r; rmi deletes them through d.
func NewStore(r Records, d Deleter) *Store { return &Store{s: r, deleter: d} }

// MadeFlag is set on the images stepexec stores: `prune --all` deletes
// only those once they have no name. It is snapshot.MadeFlag (the name of
// the same mark on layers).
const MadeFlag = "stepexec"

// ErrNotFound is returned (wrapped) when no image matches a reference.
var ErrNotFound = errors.New("image not found")

// manifestKey is the big-data key containers/image reads the manifest from.
const manifestKey = "manifest"

// Put stores an image made of config and layers (base first; they must
// already be committed, in this order, as a parent chain) under names, which
// must be normalized. A name held by another image moves to this one, as
// with `docker build -t`. If an identical image exists, only names are added.
func (st *Store) Put(config dockerspec.DockerOCIImage, layers []Layer, names []string) (Image, error) {
	config.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, 0, len(layers))}
	for _, l := range layers {
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.DiffID)
	}
	rawConfig, err := json.Marshal(config)
	if err != nil {
		return Image{}, fmt.Errorf("encoding image config: %w", err)
	}
	configDigest := digest.FromBytes(rawConfig)

	// The manifest stored locally lists layers uncompressed, by diffID, as
	// buildah commits to local storage: containers/image then finds each
	// layer by its uncompressed digest. Exports compress.
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    configDigest,
			Size:      int64(len(rawConfig)),
		},
		Layers: make([]ocispec.Descriptor, 0, len(layers)),
	}
	var top string
	for _, l := range layers {
		manifest.Layers = append(manifest.Layers, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayer,
			Digest:    l.DiffID,
			Size:      l.Size,
		})
		top = l.ID
	}
	rawManifest, err := json.Marshal(manifest)
	if err != nil {
		return Image{}, fmt.Errorf("encoding image manifest: %w", err)
	}
	manifestDigest := digest.FromBytes(rawManifest)

	id := configDigest.Encoded()
	created := time.Now().UTC()
	if config.Created != nil {
		created = *config.Created
	}
	if _, err := st.s.Image(id); err != nil {
		_, err = st.s.CreateImage(id, nil, top, "", &storage.ImageOptions{
			CreationDate: created,
			Digest:       manifestDigest,
			Flags:        map[string]any{MadeFlag: true},
			BigData: []storage.ImageBigDataOption{
				{Key: configDigest.String(), Data: rawConfig, Digest: configDigest},
				{Key: manifestKey, Data: rawManifest, Digest: manifestDigest},
				{Key: manifestKey + "-" + manifestDigest.String(), Data: rawManifest, Digest: manifestDigest},
			},
		})
		if err != nil && !errors.Is(err, storage.ErrDuplicateID) {
			return Image{}, fmt.Errorf("storing image %s: %w", id, err)
		}
	}
	if len(names) > 0 {
		if err := st.s.AddNames(id, names); err != nil {
			return Image{}, fmt.Errorf("naming image %s %s: %w", id, strings.Join(names, ", "), err)
		}
	}
	return st.byID(id)
}

// Tag adds names (normalized) to img; a name another image held moves.
func (st *Store) Tag(img Image, names []string) error {
	if err := st.s.AddNames(img.ID, names); err != nil {
		return fmt.Errorf("naming image %s %s: %w", img.ID, strings.Join(names, ", "), err)
	}
	return nil
}

// Get finds an image by name (short or qualified) or by ID or ID prefix.
func (st *Store) Get(ref string) (Image, error) {
	img, _, err := st.Resolve(ref)
	return img, err
}

// Resolve is Get that also says which stored name ref matched ("" when
// it matched an ID).
func (st *Store) Resolve(ref string) (Image, string, error) {
	id, name, err := st.resolve(ref)
	if err != nil {
		return Image{}, "", err
	}
	img, err := st.byID(id)
	return img, name, err
}

func (st *Store) resolve(ref string) (id, name string, err error) {
	if cands, err := Candidates(ref); err == nil {
		for _, name := range cands {
			if img, err := st.s.Image(name); err == nil {
				return img.ID, name, nil
			}
		}
	}
	// An ID or unambiguous ID prefix (the store resolves prefixes too).
	if isHexPrefix(strings.TrimPrefix(ref, "sha256:")) {
		if img, err := st.s.Image(strings.TrimPrefix(ref, "sha256:")); err == nil {
			return img.ID, "", nil
		}
	}
	return "", "", fmt.Errorf("%w: %s", ErrNotFound, ref)
}

func isHexPrefix(s string) bool {
	if len(s) < 3 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func (st *Store) byID(id string) (Image, error) {
	simg, err := st.s.Image(id)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st.load(simg)
}

func (st *Store) load(simg *storage.Image) (Image, error) {
	key := digest.NewDigestFromEncoded(digest.SHA256, simg.ID).String()
	raw, err := st.s.ImageBigData(simg.ID, key)
	if err != nil {
		return Image{}, fmt.Errorf("image %s has no config: %w", simg.ID, err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return Image{}, fmt.Errorf("image %s: decoding config: %w", simg.ID, err)
	}
	img := Image{
		ID:        simg.ID,
		Names:     append([]string(nil), simg.Names...),
		Created:   simg.Created,
		Config:    cfg,
		RawConfig: raw,
		TopLayer:  simg.TopLayer,
	}
	for id := simg.TopLayer; id != ""; {
		l, err := st.s.Layer(id)
		if err != nil {
			return Image{}, fmt.Errorf("image %s: layer %s: %w", simg.ID, id, err)
		}
		img.Size += l.UncompressedSize
		id = l.Parent
	}
	return img, nil
}

// Layers returns the image's layers, base first.
func (st *Store) Layers(img Image) ([]Layer, error) {
	var out []Layer
	for id := img.TopLayer; id != ""; {
		l, err := st.s.Layer(id)
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", img.ID, id, err)
		}
		out = append(out, Layer{ID: l.ID, DiffID: l.UncompressedDigest, Size: l.UncompressedSize})
		id = l.Parent
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// List returns every image that has a stepexec-readable config, newest
// first. Images other tools stored in a form stepexec cannot read (docker
// v2s1 manifests, say) are left out.
func (st *Store) List() ([]Image, error) {
	simgs, err := st.s.Images()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]Image, 0, len(simgs))
	for i := range simgs {
		img, err := st.load(&simgs[i])
		if err != nil {
			continue
		}
		out = append(out, img)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Removal is what Remove did.
type Removal struct {
	Untagged []string // names removed
	Deleted  string   // the image ID, when the image was deleted
	// Kept: the image lost its last name but a running build stands on
	// it; it is deleted, with its layers, when the build ends.
	Kept string
}

// Remove untags ref; when it was the image's last name, or ref is an ID, the
// image goes, with those of its layers no other image uses, unless a
// running build stands on them (Removal.Kept).
func (st *Store) Remove(ref string) (Removal, error) {
	id, _, err := st.resolve(ref)
	if err != nil {
		return Removal{}, err
	}
	simg, err := st.s.Image(id)
	if err != nil {
		return Removal{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	name := ""
	if cands, err := Candidates(ref); err == nil {
		for _, c := range cands {
			if name == "" && slices.Contains(simg.Names, c) {
				name = c
			}
		}
	}
	if name != "" && len(simg.Names) > 1 {
		if err := st.s.RemoveNames(id, []string{name}); err != nil {
			return Removal{}, fmt.Errorf("untagging %s: %w", name, err)
		}
		return Removal{Untagged: []string{name}}, nil
	}
	kept, err := st.deleter.DeleteImage(id)
	if err != nil {
		return Removal{}, err
	}
	r := Removal{Untagged: simg.Names, Deleted: id}
	if kept {
		r.Deleted, r.Kept = "", id
	}
	return r, nil
}
