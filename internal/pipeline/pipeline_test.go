package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/pipeline"
)

func TestImageRefIsTaggedByCommit(t *testing.T) {
	sha := "0123456789abcdef0123456789abcdef01234567"
	ref, err := pipeline.ImageRef("registry.example.com", "team/digits", sha)
	require.NoError(t, err)
	assert.Equal(t, "registry.example.com/team/digits:"+sha, ref)
	ref, err = pipeline.ImageRef("127.0.0.1:5000/", "digits", sha)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:5000/digits:"+sha, ref)

	for _, bad := range [][3]string{
		{"registry.example.com", "digits", "latest"},
		{"registry.example.com", "digits", sha[:7]},
		{"registry.example.com", "Digits", sha},
		{"registry.example.com", "digits:v1", sha},
		{"https://registry.example.com", "digits", sha},
		{"", "digits", sha},
	} {
		_, err := pipeline.ImageRef(bad[0], bad[1], bad[2])
		assert.Error(t, err, "%v", bad)
	}
}

func TestReferenceSHAIsAFullCommit(t *testing.T) {
	assert.NoError(t, pipeline.ValidateGitSHA(pipeline.ReferenceGitSHA))
}
