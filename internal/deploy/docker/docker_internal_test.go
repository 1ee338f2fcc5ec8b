package docker

import (
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/stretchr/testify/assert"
)

// An image pushed to two registries: the state must name the one deployed from.
func TestRepoDigestPicksTheDeployedRepository(t *testing.T) {
	img := image.InspectResponse{ID: "sha256:" + "ab12" + "00000000000000000000000000000000000000000000000000000000000000"[:60],
		RepoDigests: []string{"127.0.0.1:1111/digits@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "127.0.0.1:2222/digits@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}
	assert.Equal(t, "127.0.0.1:2222/digits@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", repoDigest("127.0.0.1:2222/digits:0123", img))
	assert.Equal(t, "127.0.0.1:1111/digits@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", repoDigest("127.0.0.1:1111/digits:0123", img))
	assert.Equal(t, img.ID, repoDigest("modelship.local/digits:0123", img), "a local image is recorded by its ID")
}
