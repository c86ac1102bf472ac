// Package cache is stepexec's build cache: a content-addressed index from a
// step's key to the layer that step made.
//
// Terms:
//   - key: the digest of everything a step's result depends on: its parent
//     state's key, the instruction after expansion, and what the step can
//     see that is not in the parent's layers (Chain). Equal keys mean the
//     step would do the same work on the same inputs, so its layer can be
//     reused.
//   - record: what a key maps to: the layer (its ID in the store, DiffID
//     and size) and when it was made and last used.
//   - lock: a build about to run a step takes the step's key's lock and
//     looks the key up again, so that of concurrent builds on one store
//     one runs the step and the others take its result (Lock).
//
// The index is a directory of small files, one per key, written atomically
// (a temporary file renamed into place), so concurrent builds on one store
// share it without locks: the last writer of a key wins, and either value
// is a valid result. The directory is one of the snapshot store's refs
// (snapshot.Store.RefsDir): every record keeps its layer from garbage
// collection until the record is deleted (prune).
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Key identifies a step's result.
type Key string

// version changes every key when what keys mean changes.
const version = "stepexec-cache-v1"

// Chain is the key of a step of kind (run, copy, workdir, …) whose
// definition is def (any JSON-encodable value: the instruction after
// expansion and what it sees) on the state whose key is parent, with the
// digests of its inputs (COPY sources, bind mounts).
func Chain(parent Key, kind string, def any, inputs ...digest.Digest) (Key, error) {
	b, err := json.Marshal(struct {
		V      string          `json:"v"`
		Parent Key             `json:"parent"`
		Kind   string          `json:"kind"`
		Def    any             `json:"def"`
		Inputs []digest.Digest `json:"inputs,omitempty"`
	}{version, parent, kind, def, inputs})
	if err != nil {
		return "", fmt.Errorf("cache: encoding the key of a %s step: %w", kind, err)
	}
	sum := sha256.Sum256(b)
	return Key("sha256:" + hex.EncodeToString(sum[:])), nil
}

// Base is the key of a stage's starting point: an image (by ID) or
// scratch ("").
func Base(imageID string) Key {
	if imageID == "" {
		return Key("scratch")
	}
	return Key("image:" + imageID)
}

// Record is what a key maps to.
type Record struct {
	Layer   string        `json:"layer"` // the layer's ID in the store (the field snapshot's GC reads)
	DiffID  digest.Digest `json:"diffID"`
	Size    int64         `json:"size"`
	Created time.Time     `json:"created"`
	// Used is when the record was last looked up (the file's mtime).
	Used time.Time `json:"-"`
}

// Index is a cache directory, with a directory of per-key locks.
type Index struct{ dir, lockDir string }

// Open opens the cache in dir, with its locks in lockDir (both exist;
// lockDir apart, as dir holds only records).
func Open(dir, lockDir string) *Index { return &Index{dir: dir, lockDir: lockDir} }

func (x *Index) path(k Key) (string, error) {
	hexKey, ok := strings.CutPrefix(string(k), "sha256:")
	if !ok || len(hexKey) != 64 || strings.Trim(hexKey, "0123456789abcdef") != "" {
		return "", fmt.Errorf("cache: malformed key %q", k)
	}
	return filepath.Join(x.dir, hexKey), nil
}

// Get looks k up; ok is false when there is no record. A hit marks the
// record used (for prune --filter until=).
func (x *Index) Get(k Key) (r Record, ok bool, err error) {
	p, err := x.path(k)
	if err != nil {
		return Record{}, false, err
	}
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("cache: reading %s: %w", p, err)
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Layer == "" {
		return Record{}, false, nil // a damaged record is a miss; Put replaces it
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now)
	r.Used = now
	return r, true, nil
}

// Put records k's result, replacing any earlier record of k.
func (x *Index) Put(k Key, r Record) error {
	p, err := x.path(k)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(x.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	_, err = tmp.Write(raw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache: writing %s: %w", p, err)
	}
	return nil
}

// Delete removes k's record; an unknown key is not an error.
func (x *Index) Delete(k Key) error {
	p, err := x.path(k)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// tempPrefix names a Put's file before it is renamed into place.
const tempPrefix = ".put-"

// removeStale removes a temporary file a killed Put left: one older than
// any Put takes (it names a layer, which GC would otherwise keep).
func removeStale(p string) {
	if fi, err := os.Lstat(p); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
		os.Remove(p)
	}
}

// Walk calls fn for every record, and removes what killed Puts left.
func (x *Index) Walk(fn func(Key, Record) error) error {
	entries, err := os.ReadDir(x.dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			removeStale(filepath.Join(x.dir, e.Name()))
			continue
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(x.dir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var r Record
		if json.Unmarshal(raw, &r) != nil {
			continue
		}
		if info, err := e.Info(); err == nil {
			r.Used = info.ModTime()
		}
		if err := fn(Key("sha256:"+e.Name()), r); err != nil {
			return err
		}
	}
	return nil
}
