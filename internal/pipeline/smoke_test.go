package pipeline

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestASmokeLabelRoundTripsAndRefusesWhatNoSmokeTestCanRun(t *testing.T) {
	s := SmokeSample{Input: []float32{0, 1.5, 16}, Label: 7}
	v, err := EncodeSmokeLabel(s)
	require.NoError(t, err)
	assert.Equal(t, `{"input":[0,1.5,16],"label":7}`, v)
	back, err := DecodeSmokeLabel(v)
	require.NoError(t, err)
	assert.Equal(t, s, back)

	for name, bad := range map[string]string{
		"unknown field":  `{"input":[1],"label":1,"features":1}`,
		"trailing data":  `{"input":[1],"label":1}}`,
		"no input":       `{"input":[],"label":1}`,
		"negative class": `{"input":[1],"label":-1}`,
		"not JSON":       `input=1`,
	} {
		_, err := DecodeSmokeLabel(bad)
		assert.Error(t, err, name)
	}
	_, err = EncodeSmokeLabel(SmokeSample{Input: []float32{float32(math.NaN())}})
	assert.ErrorContains(t, err, "not finite")
	_, err = EncodeSmokeLabel(SmokeSample{Input: make([]float32, MaxSmokeLabel)})
	assert.ErrorContains(t, err, "--smoke-fixture")
}
