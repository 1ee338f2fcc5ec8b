package imageref_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/imageref"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestResolvePinsATagToWhatTheRegistryServes(t *testing.T) {
	reg := testenv.SharedRegistry(t)
	digest := reg.PushRandomImage(t, "digits:v1")
	got, err := imageref.Resolve(context.Background(), reg.Addr+"/digits:v1")
	require.NoError(t, err)
	assert.Equal(t, digest, got.Digest)
	assert.Equal(t, reg.Addr+"/digits:v1@"+strings.SplitN(digest, "@", 2)[1], got.Ref)

	// The tag moves: the next resolve follows it, and what was recorded still names the old bytes.
	moved := reg.PushRandomImage(t, "digits:v1")
	again, err := imageref.Resolve(context.Background(), reg.Addr+"/digits:v1")
	require.NoError(t, err)
	assert.Equal(t, moved, again.Digest)
	assert.NotEqual(t, got.Digest, again.Digest)

	_, err = imageref.Resolve(context.Background(), reg.Addr+"/digits:missing")
	require.ErrorIs(t, err, imageref.ErrNotFound)
	assert.ErrorContains(t, err, "digits:missing")
}

func TestADigestReferenceIsKeptWithoutAsking(t *testing.T) {
	ref := "127.0.0.1:1/digits@sha256:" + strings.Repeat("a", 64) // nothing listens there
	got, err := imageref.Resolve(context.Background(), ref)
	require.NoError(t, err)
	assert.Equal(t, ref, got.Digest)
	_, err = imageref.Resolve(context.Background(), "not a reference")
	require.Error(t, err)
}

func TestSameComparesByDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("b", 64)
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"r.io/model:1", "r.io/model:1", true},
		{"r.io/model:1@" + d, "r.io/model@" + d, true},
		{"r.io/model@" + d, "r.io/model:2@" + d, true},
		{"r.io/model:1", "r.io/model@" + d, false},
		{"r.io/other@" + d, "r.io/model@" + d, false},
		{"r.io:5000/model:1@" + d, "r.io:5000/model@" + d, true},
	} {
		assert.Equal(t, tc.want, imageref.Same(tc.a, tc.b), "%s vs %s", tc.a, tc.b)
	}
}

// The labels a build set are read from the registry without pulling the image.
func TestLabelsAreReadFromTheRegistry(t *testing.T) {
	reg := testenv.SharedRegistry(t)
	want := map[string]string{"dev.modelship.model.name": "digits", "dev.modelship.smoke": `{"input":[1],"label":0}`}
	reg.PushRandomImageWithLabels(t, "labelled:v1", want)
	got, err := imageref.Labels(context.Background(), reg.Addr+"/labelled:v1")
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = imageref.Labels(context.Background(), reg.Addr+"/labelled:missing")
	require.ErrorIs(t, err, imageref.ErrNotFound)
}
