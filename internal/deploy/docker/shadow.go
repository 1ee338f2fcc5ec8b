package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/docker/docker/api/types/container"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
)

// roleShadow marks the candidate a shadow rollout mirrors live requests to.
const roleShadow = "shadow"

// ErrNoLiveServer refuses a shadow with nothing live to mirror from.
var ErrNoLiveServer = errors.New("no live server to compare with")

// shadow is a candidate container on a side port that a mirroring copy of the live server
// sends a sample of its requests to. Docker runs shadows, not canaries: the published port is
// bound by one container, so a weighted split would need a proxy in the request path that
// modelship would have to run and own, and a live server told to forward a share of its
// requests would answer clients with the candidate's predictions before any analysis.
// A shadow changes no answer: the candidate is only ever compared.
type shadow struct {
	d         *Target
	rel       deploy.Release
	res       *deploy.Result
	live      []container.Summary // the live container, stopped while its mirroring copy serves
	candidate *instance
	mirror    *instance
}

// StartShadow starts rel as a candidate on a side port and verifies it, then swaps a copy of
// the live container that mirrors the sample share of its requests to the candidate onto the
// published port (a swap like a deploy's: the port is down while one stops and the other starts).
func (d *Target) StartShadow(ctx context.Context, rel deploy.Release, sample float64) (deploy.Observed, *deploy.Result, error) {
	res, img, _, rel, err := d.prepare(ctx, rel)
	if err != nil {
		return nil, res, err
	}
	live, err := d.containers(ctx, false)
	if err != nil {
		return nil, res, err
	}
	if len(live) != 1 {
		return nil, res, fmt.Errorf("%w: environment %s has %d live containers, a shadow mirrors exactly one; deploy with --strategy direct first",
			ErrNoLiveServer, d.cfg.Environment, len(live))
	}
	liveRel := deploy.Release{Image: live[0].Labels[deploy.LabelImage], ModelName: live[0].Labels[deploy.LabelModelName],
		ModelVersion: live[0].Labels[deploy.LabelModelVersion], GitSHA: live[0].Labels[deploy.LabelGitSHA]}
	s := &shadow{d: d, rel: rel, res: res, live: live, candidate: &instance{d: d, rel: rel}, mirror: &instance{d: d, port: d.hostPort, rel: liveRel}}
	refused := func(err error) error {
		return fmt.Errorf("shadow candidate %s (%s) refused, %s keeps serving: %w", short(s.candidate.id), rel.Image, describeLive(live), err)
	}
	swap := func(err error) error {
		return fmt.Errorf("swap the mirroring copy of %s onto %s: %w", liveRel.Image, d.cfg.Publish, err)
	}
	plan := deploy.Plan{{Name: "start-candidate", Run: func(ctx context.Context) error {
		if err := s.candidate.create(ctx, img.ID, roleShadow, ""); err != nil {
			return err
		}
		return s.candidate.startOnSidePort(ctx, refused)
	}, Undo: func(ctx context.Context, cause error) error { s.candidate.remove(ctx); return cause }}}
	plan = append(plan, s.candidate.verification(refused)...)
	plan = append(plan, deploy.Action{Name: "mirror-live", Run: func(ctx context.Context) error {
		url, err := s.candidateURL(ctx)
		if err != nil {
			return err
		}
		s.mirror.env = []string{"MODELSHIP_SHADOW_URL=" + url, "MODELSHIP_SHADOW_SAMPLE=" + strconv.FormatFloat(sample, 'g', -1, 64)}
		return nil
	}}, d.stopCurrent(live), deploy.Action{
		Name: "start-mirroring",
		Run: func(ctx context.Context) error {
			err := s.mirror.create(ctx, live[0].ImageID, roleLive, d.hostPort)
			if err == nil {
				err = s.mirror.start(ctx)
			}
			if err != nil {
				s.mirror.remove(ctx)
				return swap(err)
			}
			return nil
		},
		Undo: func(ctx context.Context, cause error) error { s.mirror.remove(ctx); return cause },
	})
	// The mirroring copy is the live release: readiness and its model's metadata (liveRel has no
	// smoke inference), as a rollback checks a release recorded without one.
	plan = append(plan, s.mirror.verification(swap)...)
	if err := plan.Run(ctx, &res.Steps); err != nil {
		return nil, res, err
	}
	return s, res, nil
}

// candidateURL is where the mirroring server reaches the candidate: its address on their
// Docker network, at the server's own port.
func (s *shadow) candidateURL(ctx context.Context) (string, error) {
	info, err := s.d.cfg.Client.ContainerInspect(ctx, s.candidate.id)
	if err != nil {
		return "", fmt.Errorf("inspect shadow candidate %s: %w", short(s.candidate.id), err)
	}
	ip := containerIP(info)
	if ip == "" {
		return "", fmt.Errorf("shadow candidate %s has no network address the live server could mirror to", short(s.candidate.id))
	}
	return "http://" + net.JoinHostPort(ip, s.d.serverPort().Port()), nil
}

// Scrape reads the mirroring live server's metrics (its shadow series compare both versions)
// and the candidate's.
func (s *shadow) Scrape(ctx context.Context) (live, candidate *analysis.Snapshot, err error) {
	client := s.d.checkClient("").HTTP
	if live, err = analysis.Scrape(ctx, client, s.mirror.at+"/metrics"); err != nil {
		return nil, nil, fmt.Errorf("live server: %w", err)
	}
	if candidate, err = analysis.Scrape(ctx, client, s.candidate.at+"/metrics"); err != nil {
		return nil, nil, fmt.Errorf("shadow candidate: %w", err)
	}
	return live, candidate, nil
}

// Promote ends the mirroring (the live container serves again) and deploys the candidate's
// release as a plain deploy does: verified on a side port, then swapped onto the published port.
func (s *shadow) Promote(ctx context.Context) (*deploy.Result, error) {
	if err := s.end(ctx); err != nil {
		return nil, err
	}
	return s.d.Deploy(ctx, s.rel)
}

// Abort ends the mirroring: the live container serves again, and the candidate is removed.
func (s *shadow) Abort(ctx context.Context, cause error) error {
	if err := s.end(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("%w; and %v", cause, err)
	}
	return fmt.Errorf("%w; %s serves alone again", cause, describeLive(s.live))
}

// end removes the candidate and swaps the live container back in for its mirroring copy.
func (s *shadow) end(ctx context.Context) error {
	s.candidate.remove(ctx)
	timeout := 10
	if err := s.d.settle(ctx, func(ctx context.Context) error {
		return s.d.cfg.Client.ContainerStop(ctx, s.mirror.id, container.StopOptions{Timeout: &timeout})
	}); err != nil {
		return fmt.Errorf("stop the mirroring live server %s: %w", short(s.mirror.id), err)
	}
	for _, c := range s.live {
		if err := s.d.settle(ctx, func(ctx context.Context) error {
			return s.d.cfg.Client.ContainerStart(ctx, c.ID, container.StartOptions{})
		}); err != nil {
			return fmt.Errorf("start the live container %s again after the shadow: %w", short(c.ID), err)
		}
	}
	s.mirror.remove(ctx)
	back := &instance{d: s.d, id: s.live[0].ID, port: s.d.hostPort, rel: s.mirror.rel}
	ready := back.verification(keep)[0]
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.ReadyTimeout)
	defer cancel()
	if err := ready.Run(ctx); err != nil {
		return fmt.Errorf("the live container %s, started again after the shadow: %w", short(s.live[0].ID), err)
	}
	return nil
}
