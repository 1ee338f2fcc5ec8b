// Package project reads modelship.json, the one file a repository commits to say what it ships:
// the model, what the model takes, the fixtures and baseline the quality gate reads, how it is
// served, and its smoke inference. The file is checked against modelship.schema.json (shipped
// beside this package, for editors too) and then for what a schema cannot say; every error names
// the field. Paths in it are relative to the file's folder.
package project

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
	"github.com/modelship/modelship/internal/registry/manifest"
)

// FileName is the project file at the repository root.
const FileName = "modelship.json"

// Schema is modelship.schema.json, the JSON Schema of the file.
//
//go:embed modelship.schema.json
var Schema []byte

// Tasks and servers the file can name.
const (
	TaskClassification = "classification"
	TaskRegression     = "regression"
	ServerBuiltin      = "builtin"
	ServerDockerfile   = "dockerfile"
)

// Defaults of the optional fields.
const (
	DefaultFixtures   = "tests/fixtures/validation.json"
	DefaultBaseline   = "model_baseline.json"
	DefaultDockerfile = "Dockerfile"
	DefaultPort       = 8000
	DefaultHealthPath = "/v2/health/ready" // oip.ReadyPath, not imported: the Dagger module reads this package and would build the client too
)

// Config is modelship.json.
type Config struct {
	Schema   string   `json:"$schema,omitempty"`
	Model    Model    `json:"model"`
	Inputs   []Input  `json:"inputs,omitempty"`
	Fixtures string   `json:"fixtures,omitempty"`
	Baseline string   `json:"baseline,omitempty"`
	Serving  *Serving `json:"serving,omitempty"`
	Smoke    *Smoke   `json:"smoke,omitempty"`
}

// Model names the model the repository ships, the version it pins and its task.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Task    string `json:"task,omitempty"`
}

// Input is one model input as the server declares it (Open Inference Protocol metadata).
type Input struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Serving says which server runs the model: modelship's, or the project's own image.
type Serving struct {
	Server     string `json:"server"`
	Dockerfile string `json:"dockerfile,omitempty"`
	Context    string `json:"context,omitempty"`
	Port       int    `json:"port,omitempty"`
	HealthPath string `json:"health_path,omitempty"`
	// Backend and ONNXRuntime are for the builtin server only.
	Backend     string       `json:"backend,omitempty"`
	ONNXRuntime *ONNXRuntime `json:"onnxruntime,omitempty"`
}

// Backends of the builtin server (inference.Backend's values).
const (
	BackendAuto        = "auto"
	BackendGonnx       = "gonnx"
	BackendONNXRuntime = "onnxruntime"
)

// ONNXRuntime is where the onnxruntime image's shared library comes from: a file in the
// project or a URL, either checked by its sha256.
type ONNXRuntime struct {
	Library string `json:"library,omitempty"`
	URL     string `json:"url,omitempty"`
	SHA256  string `json:"sha256"`
}

// Smoke picks the fixture sample deploys check before traffic moves.
type Smoke struct {
	Sample int `json:"sample"`
}

// ErrNoFile is returned by Load when the file does not exist.
var ErrNoFile = errors.New("no project file")

// ErrInvalid marks a project file that breaks the schema or its rules.
var ErrInvalid = errors.New("invalid project file")

// Load reads and validates a project file.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; create it with {\"model\": {\"name\": ..., \"version\": ...}} (README: Ship your own model)", ErrNoFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read project file %s: %w", path, err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("project file %s: %w", path, err)
	}
	return c, nil
}

// Parse validates a project file's bytes against the schema, then against the rules the schema
// cannot state, and decodes them. Unknown fields are refused, so a typo is an error rather than
// a setting silently ignored.
func Parse(raw []byte) (*Config, error) {
	if err := validateSchema(raw); err != nil {
		return nil, err
	}
	var c Config
	if err := strictjson.Decode(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(FileName, doc); err != nil {
		return nil, err
	}
	return c.Compile(FileName)
})

func validateSchema(raw []byte) error {
	sch, err := compiled()
	if err != nil {
		return fmt.Errorf("modelship's own schema does not compile: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %w", ErrInvalid, err)
	}
	err = sch.Validate(inst)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems(ve), "; "))
}

var english = message.NewPrinter(language.English)

// problems are the schema's leaf findings, each at its field ("/serving/port: ..."): the
// findings above them only say that something below failed.
func problems(ve *jsonschema.ValidationError) []string {
	if len(ve.Causes) == 0 {
		at := "/" + strings.Join(ve.InstanceLocation, "/")
		msg := ve.ErrorKind.LocalizedString(english)
		if _, ok := ve.ErrorKind.(*kind.FalseSchema); ok {
			msg = "not allowed here (the builtin server takes only \"server\"; the others are for \"dockerfile\")"
		}
		return []string{fmt.Sprintf("%s: %s", at, msg)}
	}
	var out []string
	for _, c := range ve.Causes {
		out = append(out, problems(c)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validate checks what the schema cannot: names and versions as the registry takes them, and
// paths that stay inside the project.
func (c *Config) validate() error {
	var bad []string
	if err := manifest.ValidateName(c.Model.Name); err != nil {
		bad = append(bad, "/model/name: "+err.Error())
	}
	if c.Model.Version != "" {
		if err := manifest.ValidateVersion(c.Model.Version); err != nil {
			bad = append(bad, "/model/version: "+err.Error())
		}
	}
	local := func(field, p string) {
		if p != "" && !filepath.IsLocal(filepath.FromSlash(p)) {
			bad = append(bad, fmt.Sprintf("%s: %q leaves the project folder; give a path inside it, relative to %s", field, p, FileName))
		}
	}
	local("/fixtures", c.Fixtures)
	local("/baseline", c.Baseline)
	if s := c.Serving; s != nil {
		local("/serving/dockerfile", s.Dockerfile)
		local("/serving/context", s.Context)
		if s.ONNXRuntime != nil {
			local("/serving/onnxruntime/library", s.ONNXRuntime.Library)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(bad, "; "))
	}
	return nil
}

// Task is the model's task, classification unless the file says regression.
func (c *Config) Task() string {
	if c.Model.Task == "" {
		return TaskClassification
	}
	return c.Model.Task
}

// FixturesPath and BaselinePath are the gate's inputs, relative to the project folder.
func (c *Config) FixturesPath() string { return or(c.Fixtures, DefaultFixtures) }
func (c *Config) BaselinePath() string { return or(c.Baseline, DefaultBaseline) }

// Server is the serving with its defaults filled in.
func (c *Config) Server() Serving {
	s := Serving{Server: ServerBuiltin}
	if c.Serving != nil {
		s = *c.Serving
	}
	if s.Server == ServerDockerfile {
		s.Dockerfile = or(s.Dockerfile, DefaultDockerfile)
		s.Context = or(s.Context, ".")
	}
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	s.HealthPath = or(s.HealthPath, DefaultHealthPath)
	if s.Server == ServerBuiltin {
		s.Backend = or(s.Backend, BackendAuto)
	}
	return s
}

// SmokeSample is the index of the fixture sample deploys check.
func (c *Config) SmokeSample() int {
	if c.Smoke == nil {
		return 0
	}
	return c.Smoke.Sample
}

// PinnedVersion is the version the project pins for model name: an error when the file pins
// another model, since shipping it under this name would ship the wrong model.
func (c *Config) PinnedVersion(name string) (string, error) {
	if c.Model.Name != name {
		return "", fmt.Errorf("%s pins model %q, not %q: set model.name, or pass --version", FileName, c.Model.Name, name)
	}
	if c.Model.Version == "" {
		return "", fmt.Errorf("%s pins no version of %q: set model.version, or pass --version", FileName, name)
	}
	return c.Model.Version, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
