package image

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Names in the store are fully qualified, as podman writes them:
// "localhost/hello:latest" for a locally built "hello", so that
// `podman images` run by the same user lists them with the names it would
// have given them itself.

// defaultDomain is where podman files images that name no registry.
const defaultDomain = "localhost"

// Normalize turns a user's image name into the fully qualified name stored:
// "hello" → "localhost/hello:latest", "alpine:3.20" → "localhost/alpine:3.20",
// "quay.io/x/y" → "quay.io/x/y:latest". Digest references are refused: a
// build or an import makes a new image, it cannot have a given digest.
func Normalize(name string) (string, error) {
	named, err := parseName(name)
	if err != nil {
		return "", err
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("invalid image name %q: a name to tag with cannot hold a digest", name)
	}
	return reference.TagNameOnly(named).String(), nil
}

// parseName parses name, filing a name without a registry under localhost/.
func parseName(name string) (reference.Named, error) {
	if name == "" {
		return nil, fmt.Errorf("empty image name")
	}
	if hasDomain(name) {
		named, err := reference.ParseNamed(name)
		if err != nil {
			return nil, fmt.Errorf("invalid image name %q: %w", name, err)
		}
		return named, nil
	}
	named, err := reference.ParseNamed(defaultDomain + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	return named, nil
}

// hasDomain reports whether name's first component is a registry host, by
// the rule docker uses: it holds a '.' or ':' or is "localhost".
func hasDomain(name string) bool {
	first, _, found := strings.Cut(name, "/")
	if !found {
		return false
	}
	return strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first
}

// Candidates lists the stored names a reference may mean, most specific
// first. A short name ("alpine") may have been imported here
// (localhost/alpine:latest) or pulled by podman (docker.io/library/alpine:latest).
func Candidates(ref string) ([]string, error) {
	if hasDomain(ref) {
		named, err := reference.ParseNamed(ref)
		if err != nil {
			return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
		}
		return []string{reference.TagNameOnly(named).String()}, nil
	}
	local, err := parseName(ref)
	if err != nil {
		return nil, err
	}
	out := []string{reference.TagNameOnly(local).String()}
	if hub, err := reference.ParseNormalizedNamed(ref); err == nil {
		out = append(out, reference.TagNameOnly(hub).String())
	}
	return out, nil
}

// SplitName splits a stored name into repository and tag for listings:
// "localhost/hello:latest" → ("localhost/hello", "latest").
func SplitName(name string) (repo, tag string) {
	named, err := reference.ParseNamed(name)
	if err != nil {
		return name, "<none>"
	}
	tag = "<none>"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	} else if d, ok := named.(reference.Digested); ok {
		tag = d.Digest().String()
	}
	return named.Name(), tag
}

// HasDigest reports whether ref names an image by digest (name@sha256:…).
func HasDigest(ref string) bool { return strings.Contains(ref, "@") }
