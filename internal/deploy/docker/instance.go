package docker

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/serving"
)

// instance is one container a plan starts, verifies, and stops or removes when it is undone.
type instance struct {
	d    *Target
	id   string
	port string // host port it is published on; a candidate's is known once it runs
	rel  deploy.Release
	at   string // where the checks reach it, found by the first check
}

// keep leaves an error as it is.
func keep(err error) error { return err }

func (in *instance) create(ctx context.Context, imageID, role, hostPort string) (err error) {
	in.id, err = in.d.create(ctx, imageID, in.rel, role, hostPort)
	return err
}

func (in *instance) start(ctx context.Context) error {
	return in.d.cfg.Client.ContainerStart(ctx, in.id, container.StartOptions{})
}

// remove deletes the container, if one was created.
func (in *instance) remove(ctx context.Context) {
	if in.id != "" {
		_ = in.d.cfg.Client.ContainerRemove(context.WithoutCancel(ctx), in.id, container.RemoveOptions{Force: true})
	}
}

// startOnSidePort starts a candidate on the free port Docker picks and reads that port. A
// server that dies at once loses its binding before it can be read: that is a refused release,
// with its log.
func (in *instance) startOnSidePort(ctx context.Context, refused func(error) error) error {
	if err := in.start(ctx); err != nil {
		return fmt.Errorf("start candidate of %s: %w", in.rel.Image, err)
	}
	info, err := in.d.cfg.Client.ContainerInspect(ctx, in.id)
	if err != nil {
		return fmt.Errorf("inspect candidate %s: %w", short(in.id), err)
	}
	if info.NetworkSettings != nil {
		if b := info.NetworkSettings.Ports[serverPort]; len(b) > 0 {
			in.port = b[0].HostPort
			return nil
		}
	}
	if info.State != nil && !info.State.Running {
		return refused(fmt.Errorf("%w: container exited with code %d: %s", deploy.ErrVerification, info.State.ExitCode, in.d.logTail(ctx, in.id)))
	}
	return fmt.Errorf("candidate %s has no published port", short(in.id))
}

// verification is the two steps every release passes, ready then smoke, each within the
// ready timeout; annotate says what a failure means here (a refused candidate, a failed swap).
func (in *instance) verification(annotate func(error) error) []deploy.Action {
	check := func(fn func(context.Context, *serving.Client) error) func(context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, in.d.cfg.ReadyTimeout)
			defer cancel()
			var err error
			if in.at == "" {
				in.at, err = in.url(ctx)
			}
			if err == nil {
				err = fn(ctx, in.d.checkClient(in.at))
			}
			if err != nil && !strings.Contains(err.Error(), "exited with code") {
				err = fmt.Errorf("%w (container log: %s)", err, in.d.logTail(context.WithoutCancel(ctx), in.id))
			}
			if err != nil {
				return annotate(err)
			}
			return nil
		}
	}
	return []deploy.Action{
		{Name: "ready", Run: check(func(ctx context.Context, c *serving.Client) error { return deploy.WaitReady(ctx, c, in.alive) })},
		{Name: "smoke", Run: check(func(ctx context.Context, c *serving.Client) error { return deploy.SmokeTest(ctx, c, in.rel) })},
	}
}

// url is where the checks reach the server: the published port on the check host, or the
// container's own address when the checks run beside it on a Docker network.
func (in *instance) url(ctx context.Context) (string, error) {
	host, port := in.d.checkHost, in.port
	if host == CheckViaContainerIP {
		info, err := in.d.cfg.Client.ContainerInspect(ctx, in.id)
		if err != nil {
			return "", fmt.Errorf("inspect container %s: %w", short(in.id), err)
		}
		host, port = containerIP(info), serverPort.Port()
		if host == "" {
			return "", fmt.Errorf("container %s has no network address to verify it at", short(in.id))
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// alive fails once the container has exited, so a crashed server fails verification at once.
func (in *instance) alive(ctx context.Context) error {
	info, err := in.d.cfg.Client.ContainerInspect(ctx, in.id)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", short(in.id), err)
	}
	if !info.State.Running {
		return fmt.Errorf("container %s exited with code %d: %s", short(in.id), info.State.ExitCode, in.d.logTail(ctx, in.id))
	}
	return nil
}
