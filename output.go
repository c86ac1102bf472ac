package stepexec

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/registry"
)

// Output is one export of a built image (docker build --output).
type Output struct {
	// Type is "oci" (an OCI layout directory, or an archive of one when
	// Dest ends in .tar), "docker" (a docker save archive: docker load and
	// podman load read it), "local" (the image's flattened root
	// filesystem in directory Dest), "tar" (the same as one tar file),
	// "image" (names in the store, pushed when Push) or "registry" (pushed,
	// not named in the store).
	Type string
	// Dest is the path oci, docker, local and tar write.
	Dest string
	// Names: for oci and docker, the name recorded in the export
	// (default: the build's first -t); for image and registry, where the
	// image goes.
	Names []string
	// Push: an image output also pushes its names.
	Push bool
	// Compression ("gzip", the default, or "zstd") and ForceCompression
	// are the push's (registry.PushOptions).
	Compression      string
	ForceCompression bool
}

// pushes tells whether the output sends the image to registries.
func (o Output) pushes() bool { return o.Type == "registry" || (o.Type == "image" && o.Push) }

// checkOutput tells, before the build spends any time, whether out could
// be written: the destination's directory exists and is writable, and
// what is there is the output's kind; the names to push name registries.
func checkOutput(out Output) error {
	switch out.Type {
	case "oci":
		return image.CheckOutput(image.OCIOutput{Dest: out.Dest})
	case "docker", "tar":
		return checkFileDest(out)
	case "local":
		return checkLocalDest(out)
	case "image", "registry":
		if len(out.Names) == 0 {
			return fmt.Errorf("--output type=%s needs name=REF", out.Type)
		}
		if !out.pushes() {
			return nil
		}
		for _, n := range out.Names {
			if _, err := registry.ParseDestination(n); err != nil {
				return fmt.Errorf("--output type=%s: %w", out.Type, err)
			}
		}
		return nil
	}
	return fmt.Errorf("--output type=%q: want oci, docker, local, tar, image or registry", out.Type)
}

// checkFileDest checks a dest that becomes one file.
func checkFileDest(out Output) error {
	if out.Dest == "" {
		return fmt.Errorf("--output type=%s needs dest=FILE", out.Type)
	}
	if err := checkWritableParent(out.Dest); err != nil {
		return err
	}
	if st, err := os.Stat(out.Dest); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("output %s exists and is not a file", out.Dest)
	}
	return nil
}

// checkLocalDest checks a dest directory: missing (it is made) or empty.
func checkLocalDest(out Output) error {
	if out.Dest == "" {
		return fmt.Errorf("--output type=local needs dest=DIR")
	}
	if err := checkWritableParent(out.Dest); err != nil {
		return err
	}
	st, err := os.Lstat(out.Dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", out.Dest, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s exists and is not a directory", out.Dest)
	}
	entries, err := os.ReadDir(out.Dest)
	if err != nil {
		return fmt.Errorf("output %s: %w", out.Dest, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("output %s is not empty: type=local writes into a new or empty directory", out.Dest)
	}
	return nil
}

// checkWritableParent checks that dest's directory exists and is writable.
func checkWritableParent(dest string) error {
	parent := filepath.Dir(dest)
	st, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("output %s: directory %s: %w", dest, parent, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s: %s is not a directory", dest, parent)
	}
	if err := unix.Access(parent, unix.W_OK); err != nil {
		return fmt.Errorf("output %s: cannot write in %s: %w", dest, parent, err)
	}
	return nil
}

// ParseOutput reads docker's --output CSV syntax: type=TYPE and the
// type's keys (dest=, name=, push=, compression=, force-compression=);
// a name with several references is quoted, "name=a,b".
func ParseOutput(spec string) (Output, error) {
	kv, err := csvKeyValues(spec)
	if err != nil {
		return Output{}, fmt.Errorf("--output %q: %w", spec, err)
	}
	out := Output{Type: kv["type"], Dest: kv["dest"], Compression: kv["compression"]}
	if out.Type == "" {
		return Output{}, fmt.Errorf("--output %q: type= is required (oci, docker, local, tar, image or registry)", spec)
	}
	if n := kv["name"]; n != "" {
		out.Names = strings.Split(n, ",")
	}
	for key, dst := range map[string]*bool{"push": &out.Push, "force-compression": &out.ForceCompression} {
		if v, ok := kv[key]; ok {
			if *dst, err = parseBool(v); err != nil {
				return Output{}, fmt.Errorf("--output %q: %s: %w", spec, key, err)
			}
		}
	}
	allowed := map[string][]string{
		"oci": {"dest", "name"}, "docker": {"dest", "name"}, "local": {"dest"}, "tar": {"dest"},
		"image":    {"name", "push", "compression", "force-compression"},
		"registry": {"name", "compression", "force-compression"},
	}
	keys, known := allowed[out.Type]
	if !known {
		return Output{}, fmt.Errorf("--output %q: type %q is not supported (oci, docker, local, tar, image or registry)", spec, out.Type)
	}
	for k := range kv {
		if k != "type" && !slices.Contains(keys, k) {
			return Output{}, fmt.Errorf("--output %q: option %q does not apply to type=%s", spec, k, out.Type)
		}
	}
	switch out.Type {
	case "registry":
		out.Push = true
	case "oci", "docker", "local", "tar":
		if out.Dest == "" {
			return Output{}, fmt.Errorf("--output %q: dest=PATH is required", spec)
		}
	}
	if out.Type == "oci" || out.Type == "docker" {
		for i, n := range out.Names {
			if out.Names[i], err = image.Normalize(n); err != nil {
				return Output{}, fmt.Errorf("--output %q: %w", spec, err)
			}
		}
	}
	return out, nil
}

// csvKeyValues splits a CSV line of KEY=VALUE fields (keys lowercased).
func csvKeyValues(spec string) (map[string]string, error) {
	fields, err := csv.NewReader(strings.NewReader(spec)).Read()
	if err != nil {
		return nil, err
	}
	kv := map[string]string{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", f)
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return kv, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", v)
}
