package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/docker/docker/client"
)

// LoadImageArchive loads an image tarball (docker save, or a Dagger container's AsTarball) into
// the engine and tags it ref, so a deploy of ref needs no registry the engine can reach: how a
// laptop pipeline hands its freshly built image to the local Docker engine.
func LoadImageArchive(ctx context.Context, cli *client.Client, path, ref string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	resp, err := cli.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image archive %s into %s: %w", path, cli.DaemonHost(), err)
	}
	defer resp.Body.Close()
	var loaded string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			continue
		}
		if msg.Error != "" {
			return fmt.Errorf("load image archive %s: %s", path, msg.Error)
		}
		line := strings.TrimSpace(msg.Stream)
		for _, prefix := range []string{"Loaded image ID: ", "Loaded image: "} {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				loaded = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("load image archive %s: %w", path, err)
	}
	if loaded == "" {
		return errors.New("load image archive " + path + ": the engine did not say which image it loaded; is it an image tarball?")
	}
	if err := cli.ImageTag(ctx, loaded, ref); err != nil {
		return fmt.Errorf("tag loaded image %s as %s: %w", loaded, ref, err)
	}
	return nil
}

// LoadImageArchive loads an image tarball into this target's engine, tagged ref.
func (d *Target) LoadImageArchive(ctx context.Context, path, ref string) error {
	return LoadImageArchive(ctx, d.cfg.Client, path, ref)
}
