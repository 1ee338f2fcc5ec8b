package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/serving/oip"
)

// instance is one container a plan starts, verifies, and stops or removes when it is undone.
type instance struct {
	d    *Target
	id   string
	port string // host port it is published on; a candidate's is known once it runs
	rel  deploy.Release
	at   string   // where the checks reach it, found by the first check
	env  []string // settings beyond the release's (a mirroring live server's shadow URL)
}

// keep leaves an error as it is.
func keep(err error) error { return err }

func (in *instance) create(ctx context.Context, imageID, role, hostPort string) (err error) {
	in.id, err = in.d.create(ctx, imageID, in.rel, role, hostPort, in.env...)
	return err
}

func (in *instance) start(ctx context.Context) error {
	return in.d.cfg.Client.ContainerStart(ctx, in.id, container.StartOptions{})
}

// remove deletes the container, if one was created, waiting out an engine that is restarting.
func (in *instance) remove(ctx context.Context) {
	if in.id == "" {
		return
	}
	_ = in.d.settle(ctx, func(ctx context.Context) error {
		err := in.d.cfg.Client.ContainerRemove(ctx, in.id, container.RemoveOptions{Force: true})
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// settle runs op, a call that puts the engine back as it was before the rollout (a removal, a
// start of what was live), again until it succeeds or the ready timeout has passed, even once
// ctx is cancelled. An engine restarted in the middle of a rollout fails calls while it goes
// down and until it is back; giving up at the first would leave the rollout half done, and the
// engine makes that worse when it comes back: it starts the new release's container again (its
// restart policy) on the published port, and not the old one, which the rollout had stopped.
func (d *Target) settle(ctx context.Context, op func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(d.cfg.ReadyTimeout)
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		d.answers(ctx)
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// answers tells whether the engine takes a new connection now, and counts it in d.lost when it
// does not. A call on a connection kept alive from before is no test: an engine shutting down
// closes its listener first and serves those until it exits, stopping containers meanwhile.
// The dial runs aside because the client's dialer ignores ctx for a unix or TLS engine.
func (d *Target) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		conn, err := d.cfg.Client.Dialer()(ctx)
		if err == nil {
			conn.Close()
		}
		dialed <- err
	}()
	var err error
	select {
	case err = <-dialed:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		d.lost.Add(1)
	}
	return err == nil
}

// engineLost names the engine when it stopped answering during a rollout that failed (lost was
// d.lost before it): it was restarted, stopped or crashed, and what failed then (a start, a
// container it stopped on its way down) says nothing of the release, so the failure is not
// reported as the release's.
func (d *Target) engineLost(ctx context.Context, lost int64, err error) error {
	if errors.Is(err, ErrEngineUnreachable) || (d.answers(ctx) && d.lost.Load() == lost && !client.IsErrConnectionFailed(err)) {
		return err
	}
	return fmt.Errorf("%w: %s stopped answering in the middle of the rollout (restarted or stopped), so this says nothing of the release: %v", ErrEngineUnreachable, d.cfg.Engine, err)
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
		if b := info.NetworkSettings.Ports[in.d.serverPort()]; len(b) > 0 {
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
	check := func(fn func(context.Context, *oip.Client) error) func(context.Context) error {
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
		{Name: "ready", Run: check(func(ctx context.Context, c *oip.Client) error { return deploy.WaitReady(ctx, c, in.alive) })},
		{Name: "smoke", Run: check(func(ctx context.Context, c *oip.Client) error { return deploy.SmokeTest(ctx, c, in.rel) })},
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
		host, port = containerIP(info), in.d.serverPort().Port()
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
