// Package project reads modelship.json, the file a repository commits to say which model it
// ships: a commit that pushed no model of its own ships the version pinned here.
package project

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
	"github.com/modelship/modelship/internal/registry"
)

// FileName is the project file at the repository root.
const FileName = "modelship.json"

// Config is modelship.json.
type Config struct {
	Model Model `json:"model"`
}

// Model names the model the repository ships and the version it pins.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// ErrNoFile is returned by Load when the file does not exist.
var ErrNoFile = errors.New("no project file")

// Load reads and validates a project file. Unknown fields are refused, so a typo is an error
// rather than a setting silently ignored.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; create it with {\"model\": {\"name\": ..., \"version\": ...}} to pin a model", ErrNoFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read project file %s: %w", path, err)
	}
	var c Config
	if err := strictjson.Decode(raw, &c); err != nil {
		return nil, fmt.Errorf("project file %s: %w", path, err)
	}
	if err := registry.ValidateName(c.Model.Name); err != nil {
		return nil, fmt.Errorf("project file %s: model.name: %w", path, err)
	}
	if err := registry.ValidateVersion(c.Model.Version); err != nil {
		return nil, fmt.Errorf("project file %s: model.version: %w", path, err)
	}
	return &c, nil
}

// PinnedVersion is the version the project pins for model name: an error when the file pins
// another model, since shipping it under this name would ship the wrong model.
func (c *Config) PinnedVersion(name string) (string, error) {
	if c.Model.Name != name {
		return "", fmt.Errorf("%s pins model %q, not %q: set model.name, or pass --version", FileName, c.Model.Name, name)
	}
	return c.Model.Version, nil
}
