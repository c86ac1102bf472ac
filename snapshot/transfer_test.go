package snapshot

import (
	"archive/tar"
	"bytes"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// oneFileTar is a layer tar holding one file.
func oneFileTar(t *testing.T, name, content string) ([]byte, digest.Digest) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes(), digest.FromBytes(b.Bytes())
}

// TestForTransferLayersGoWithTheLease: layers a transfer (a pull) creates
// are held by its lease and marked as stepexec's, so releasing the lease
// of a pull that made no image deletes them, while the layers of a pull
// that did make one stay; a layer the transfer only found is held too.
func TestForTransferLayersGoWithTheLease(t *testing.T) {
	s, _ := openTestStore(t)
	existing := commitTree(t, s, "existing", "", baseTree)
	put := func(lease *Lease, name string) *storage.Layer {
		t.Helper()
		data, diffID := oneFileTar(t, name, name)
		l, _, err := s.ForTransfer(lease).PutLayer(LayerID(existing.ID, diffID), existing.ID, nil, "", false,
			&storage.LayerOptions{UncompressedDigest: diffID}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if l.Flags[MadeFlag] != true {
			t.Errorf("a transferred layer lacks the %s flag: %v", MadeFlag, l.Flags)
		}
		return l
	}

	failed, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForTransfer(failed).Layer(existing.ID); err != nil {
		t.Fatal(err)
	}
	if made, ok := failed.held[existing.ID]; !ok || made {
		t.Errorf("a layer the transfer looked up is not held, or held as one it made (held %v, made %v)", ok, made)
	}
	orphan := put(failed, "orphan")
	if _, err := failed.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Layer(orphan.ID); err == nil {
		t.Errorf("layer %s of a pull that made no image is still there", orphan.ID)
	}
	if _, err := s.store.Layer(existing.ID); err != nil {
		t.Errorf("the layer the failed pull found went with it: %v", err)
	}

	ok, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	kept := put(ok, "kept")
	if _, err := s.store.CreateImage("", []string{"pulled"}, kept.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ok.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Layer(kept.ID); err != nil {
		t.Errorf("layer of a pulled image went with the lease: %v", err)
	}
}
