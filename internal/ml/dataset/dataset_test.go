package dataset_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// The shipped copy must be the file Debian's python3-sklearn 1.2.1+dfsg-1 carries.
const digitsSHA256 = "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a"

func TestShippedDigitsAreTheUpstreamFile(t *testing.T) {
	raw, err := os.ReadFile(projectpath.Join(t, "data/digits/digits.csv.gz"))
	require.NoError(t, err)
	sum := sha256.Sum256(raw)
	assert.Equal(t, digitsSHA256, hex.EncodeToString(sum[:]))

	samples, err := dataset.LoadDigitsCSV(projectpath.Join(t, "data/digits/digits.csv.gz"))
	require.NoError(t, err)
	require.Len(t, samples, 1797)
	perClass := map[int]int{}
	for _, s := range samples {
		perClass[s.Label]++
	}
	assert.Len(t, perClass, 10, "every digit 0..9 is present")
}

func TestSplitIsDeterministicAndDisjoint(t *testing.T) {
	samples, err := dataset.LoadDigitsCSV(projectpath.Join(t, "data/digits/digits.csv.gz"))
	require.NoError(t, err)
	train1, val1, err := dataset.Split(samples, 42, 450)
	require.NoError(t, err)
	train2, val2, err := dataset.Split(samples, 42, 450)
	require.NoError(t, err)
	assert.Equal(t, val1, val2)
	assert.Equal(t, train1, train2)
	assert.Len(t, val1, 450)
	assert.Len(t, train1, 1797-450)

	_, val3, err := dataset.Split(samples, 7, 450)
	require.NoError(t, err)
	assert.NotEqual(t, val1, val3, "another seed gives another split")

	_, _, err = dataset.Split(samples, 42, 0)
	assert.Error(t, err)
	_, _, err = dataset.Split(samples, 42, len(samples))
	assert.Error(t, err)
}

func TestLoadDigitsCSVRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.csv.gz")
	require.NoError(t, os.WriteFile(plain, []byte("0,1,2\n"), 0o644))
	_, err := dataset.LoadDigitsCSV(plain)
	assert.ErrorContains(t, err, "not gzip")

	_, err = dataset.LoadDigitsCSV(filepath.Join(dir, "missing.csv.gz"))
	assert.ErrorContains(t, err, "missing.csv.gz")
}

func TestShippedFixtureIsValidAndRoundTrips(t *testing.T) {
	path := projectpath.Join(t, "tests/fixtures/digits_validation.json")
	f, err := dataset.ReadFixture(path)
	require.NoError(t, err)
	assert.Equal(t, 64, f.Features)
	assert.Equal(t, 10, f.Classes)
	assert.GreaterOrEqual(t, float64(len(f.Samples)), 0.25*1797, "at least a quarter of the data is held out")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	again, err := f.Marshal()
	require.NoError(t, err)
	assert.Equal(t, string(raw), string(again))
}

func TestReadFixtureNamesWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ body, want string }{
		"malformed":      {`{"features":64,`, "parse validation fixture"},
		"unknown field":  {`{"features":64,"classes":10,"samples":[],"extra":1}`, `unknown field "extra"`},
		"no samples":     {`{"features":64,"classes":10,"samples":[]}`, "no samples"},
		"feature count":  {`{"features":64,"classes":10,"samples":[{"features":[1,2,3],"label":1}]}`, "sample 0 has 3 features, want 64"},
		"label range":    {`{"features":2,"classes":10,"samples":[{"features":[1,2],"label":12}]}`, "label 12"},
		"no width":       {`{"features":0,"classes":10,"samples":[{"features":[],"label":1}]}`, "features is 0"},
		"too few labels": {`{"features":2,"classes":1,"samples":[{"features":[1,2],"label":0}]}`, "at least 2"},
		"over fp32":      {`{"features":2,"classes":2,"samples":[{"features":[1,1e300],"label":0}]}`, "not a finite FP32"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			require.NoError(t, os.WriteFile(p, []byte(tc.body), 0o644))
			_, err := dataset.ReadFixture(p)
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, p)
		})
	}
	_, err := dataset.ReadFixture(filepath.Join(dir, "absent.json"))
	assert.ErrorContains(t, err, "absent.json")
}
