package registry

import (
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// pullCandidates lists the references a pull of ref tries, in order: ref
// itself when it names a registry; else, as podman resolves short names,
// its alias, or each unqualified-search registry of registries.conf; and
// when none is configured, docker.io (docker.io/library/NAME for a
// one-word name), as docker does.
func pullCandidates(sys *types.SystemContext, ref string) ([]reference.Named, string, error) {
	if strings.HasPrefix(ref, "sha256:") || isImageID(ref) {
		return nil, "", fmt.Errorf("%s is an image ID: it can only be found in the store, not pulled", ref)
	}
	resolved, err := shortnames.Resolve(sys, ref)
	if err != nil {
		search, serr := sysregistriesv2.UnqualifiedSearchRegistries(sys)
		if serr != nil || len(search) > 0 || !shortnames.IsShortName(ref) {
			return nil, "", fmt.Errorf("resolving %s: %w", ref, err)
		}
		hub := *sys
		hub.PodmanOnlyShortNamesIgnoreRegistriesConfAndForceDockerHub = true
		if resolved, err = shortnames.Resolve(&hub, ref); err != nil {
			return nil, "", fmt.Errorf("resolving %s: %w", ref, err)
		}
	}
	out := make([]reference.Named, 0, len(resolved.PullCandidates))
	for _, c := range resolved.PullCandidates {
		out = append(out, reference.TagNameOnly(c.Value))
	}
	return out, resolved.Description(), nil
}

// LocalNames lists the stored names a short name may have been pulled
// under besides localhost/NAME and docker.io/library/NAME (which package
// image tries): its registries.conf alias and NAME on each
// unqualified-search registry, as podman looks short names up in its
// store. A qualified name gives nothing.
func LocalNames(ref string) []string {
	if !shortnames.IsShortName(ref) {
		return nil
	}
	named, err := shortnames.ResolveLocally(&types.SystemContext{}, ref)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(named))
	for _, n := range named {
		out = append(out, n.String())
	}
	return out
}

// isImageID reports whether s is a full image ID (64 hex digits), which
// docker never takes for a name.
func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// ParseDestination parses a push destination: a reference naming its
// registry, optionally with docker:// in front (as podman takes it). A
// name without a registry is refused: stepexec stores those under
// localhost/, which no registry serves.
func ParseDestination(dest string) (reference.Named, error) {
	s := strings.TrimPrefix(dest, "docker://")
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("invalid destination %q: %w", dest, err)
	}
	if reference.Domain(named) == "localhost" {
		return nil, fmt.Errorf("cannot push %s: it names no registry (localhost/ is the local store's); name one, e.g. registry.example.com/%s", dest, reference.Path(named))
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("cannot push to %s: a destination names a tag, not a digest", dest)
	}
	return reference.TagNameOnly(named), nil
}
