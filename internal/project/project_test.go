package project_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/project"
)

// Every project file the repository ships (its own and the examples') is valid.
func TestShippedProjectFilesAreValid(t *testing.T) {
	files, err := filepath.Glob(projectpath.Join(t, "examples/*/"+project.FileName))
	require.NoError(t, err)
	files = append(files, projectpath.Join(t, project.FileName))
	for _, f := range files {
		c, err := project.Load(f)
		require.NoError(t, err, f)
		assert.NotEmpty(t, c.Model.Name, f)
	}
}

func TestDigitsProjectFile(t *testing.T) {
	c, err := project.Load(projectpath.Join(t, project.FileName))
	require.NoError(t, err)
	assert.Equal(t, "digits", c.Model.Name)
	assert.Equal(t, project.TaskClassification, c.Task())
	assert.Equal(t, "tests/fixtures/digits_validation.json", c.FixturesPath())
	assert.Equal(t, project.Serving{Server: project.ServerBuiltin, Port: 8000, HealthPath: "/v2/health/ready", Backend: project.BackendAuto}, c.Server())
	v, err := c.PinnedVersion("digits")
	require.NoError(t, err)
	assert.Equal(t, "1.0.0", v)
}

func TestDefaults(t *testing.T) {
	c, err := project.Parse([]byte(`{"model":{"name":"wine"},"serving":{"server":"dockerfile","port":8080}}`))
	require.NoError(t, err)
	assert.Equal(t, project.TaskClassification, c.Task())
	assert.Equal(t, project.DefaultFixtures, c.FixturesPath())
	assert.Equal(t, project.DefaultBaseline, c.BaselinePath())
	assert.Equal(t, project.Serving{Server: "dockerfile", Dockerfile: "Dockerfile", Context: ".", Port: 8080, HealthPath: "/v2/health/ready"}, c.Server())
	assert.Equal(t, 0, c.SmokeSample())
	builtin, err := project.Parse([]byte(`{"model":{"name":"wine"}}`))
	require.NoError(t, err)
	assert.Equal(t, project.BackendAuto, builtin.Server().Backend, "the builtin server picks its backend per model unless told")
	_, err = c.PinnedVersion("wine")
	assert.ErrorContains(t, err, "pins no version")
}

// A bad file is refused with every problem named at its field.
func TestBadFilesNameTheField(t *testing.T) {
	cases := map[string]struct{ file, want string }{
		"not json":           {`{"model":`, "not JSON"},
		"no model":           {`{}`, "/: missing property 'model'"},
		"unknown field":      {`{"model":{"name":"a"},"fixture":"x"}`, "/: additional properties 'fixture' not allowed"},
		"bad name":           {`{"model":{"name":"Wine Model"}}`, "/model/name:"},
		"bad task":           {`{"model":{"name":"a","task":"ranking"}}`, "/model/task:"},
		"bad version":        {`{"model":{"name":"a","version":"../x"}}`, "/model/version:"},
		"two inputs":         {`{"model":{"name":"a"},"inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]},{"name":"y","datatype":"FP32","shape":[-1,2]}]}`, "/inputs:"},
		"int input":          {`{"model":{"name":"a"},"inputs":[{"name":"x","datatype":"INT64","shape":[-1,2]}]}`, "/inputs/0/datatype:"},
		"fixed batch":        {`{"model":{"name":"a"},"inputs":[{"name":"x","datatype":"FP32","shape":[1,2]}]}`, "/inputs/0/shape/0:"},
		"port":               {`{"model":{"name":"a"},"serving":{"server":"dockerfile","port":70000}}`, "/serving/port: maximum"},
		"health path":        {`{"model":{"name":"a"},"serving":{"server":"dockerfile","health_path":"ready"}}`, "/serving/health_path:"},
		"builtin with port":  {`{"model":{"name":"a"},"serving":{"server":"builtin","port":8080}}`, "/serving/port: not allowed here"},
		"escaping path":      {`{"model":{"name":"a"},"fixtures":"../../etc/passwd"}`, "/fixtures: \"../../etc/passwd\" leaves the project folder"},
		"negative sample":    {`{"model":{"name":"a"},"smoke":{"sample":-1}}`, "/smoke/sample:"},
		"bad backend":        {`{"model":{"name":"a"},"serving":{"server":"builtin","backend":"tensorrt"}}`, "/serving/backend:"},
		"own server backend": {`{"model":{"name":"a"},"serving":{"server":"dockerfile","backend":"gonnx"}}`, "/serving/backend: not allowed here"},
		"ort without digest": {`{"model":{"name":"a"},"serving":{"server":"builtin","onnxruntime":{"url":"https://example.com/ort.tgz"}}}`, "/serving/onnxruntime: missing property 'sha256'"},
		"ort short digest":   {`{"model":{"name":"a"},"serving":{"server":"builtin","onnxruntime":{"url":"https://x/o.tgz","sha256":"abc"}}}`, "/serving/onnxruntime/sha256:"},
		"ort file and url":   {`{"model":{"name":"a"},"serving":{"server":"builtin","onnxruntime":{"library":"lib/ort.so","url":"https://x/o.tgz","sha256":"` + strings.Repeat("a", 64) + `"}}}`, "/serving/onnxruntime:"},
		"ort escaping file":  {`{"model":{"name":"a"},"serving":{"server":"builtin","onnxruntime":{"library":"../ort.so","sha256":"` + strings.Repeat("a", 64) + `"}}}`, "/serving/onnxruntime/library: \"../ort.so\" leaves"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := project.Parse([]byte(tc.file))
			require.ErrorIs(t, err, project.ErrInvalid)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	_, err := project.Load(filepath.Join(dir, project.FileName))
	require.ErrorIs(t, err, project.ErrNoFile)
	path := filepath.Join(dir, project.FileName)
	require.NoError(t, os.WriteFile(path, []byte(`{"model":{"name":"a","task":"x"}}`), 0o644))
	_, err = project.Load(path)
	require.ErrorIs(t, err, project.ErrInvalid)
	assert.Contains(t, err.Error(), path)
}
