package snapshot

import (
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestLayerIDMatchesPodman checks LayerID against the IDs podman 4.3 gave
// the layers of a two-layer image it pulled (Alpine, then a RUN's layer):
// stepexec's own layers must get the same IDs so that both share them.
func TestLayerIDMatchesPodman(t *testing.T) {
	base := digest.Digest("sha256:75654b8eeebd3beae97271a102f57cdeb794cc91e442648544963a7e951e9558")
	run := digest.Digest("sha256:4891c7665b8fdebdb9a6179a9776455527eed510fe7a9db5298a87abb28a1fd2")
	cases := []struct {
		parent string
		diffID digest.Digest
		want   string
	}{
		{"", base, "75654b8eeebd3beae97271a102f57cdeb794cc91e442648544963a7e951e9558"},
		{base.Encoded(), run, "d266b86cc33d47bcad4841af19de62aa3aace7b6a892374e983c3ef591a2f773"},
	}
	for _, c := range cases {
		if got := LayerID(c.parent, c.diffID); got != c.want {
			t.Errorf("LayerID(%q, %s) = %s, want %s (podman's)", c.parent, c.diffID, got, c.want)
		}
	}
}
