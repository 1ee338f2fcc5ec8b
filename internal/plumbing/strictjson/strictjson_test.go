package strictjson_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

func TestDecodeIsStrict(t *testing.T) {
	var v struct{ A int }
	require.NoError(t, strictjson.Decode([]byte(`{"A": 1}`), &v))
	assert.Equal(t, 1, v.A)
	assert.ErrorContains(t, strictjson.Decode([]byte(`{"A": 1, "B": 2}`), &v), `unknown field "B"`)
	assert.ErrorContains(t, strictjson.Decode([]byte(`{"A": 1} {"A": 2}`), &v), "data after the JSON object")
	assert.Error(t, strictjson.Decode([]byte(`{"A": `), &v))
	for _, tail := range []string{"}", "]", "}junk", "]]", " x", "0"} {
		assert.ErrorIs(t, strictjson.Decode([]byte(`{"A": 1}`+tail), &v), strictjson.ErrTrailingData, "trailing %q", tail)
	}
	require.NoError(t, strictjson.Decode([]byte("{\"A\": 1} \n\t"), &v), "white space after the object is fine")
}
