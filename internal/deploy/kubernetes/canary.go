package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
)

// ErrCannotAnalyse marks a canary or shadow that could not read the pods' metrics.
var ErrCannotAnalyse = errors.New("cannot read the pods' metrics")

// canary is a candidate on the idle colour beside the live one. Its share of the traffic is a
// replica ratio behind the one Service: while it runs, the Service selects both colours, and
// the candidate has c pods beside the stable colour's full set, so stable keeps its capacity
// and an abort is a selector switch back, with nothing to scale up first.
type canary struct {
	k            *Target
	rel          deploy.Release
	stable, cand string
	prev         *appsv1.Deployment // the idle colour as it was, put back on an abort
	res          *deploy.Result
	split        bool // the Service selects both colours
}

// StartCanary applies rel to the idle colour with one pod, waits for it and smoke-tests it; the
// Service still selects only the live colour.
func (k *Target) StartCanary(ctx context.Context, rel deploy.Release) (deploy.Canary, *deploy.Result, error) {
	c, err := k.startCandidate(ctx, rel, 1)
	if err != nil {
		return nil, c.res, err
	}
	return c, c.res, nil
}

// startCandidate is what canary and shadow share: the candidate on the idle colour with the
// given pods, rolled out and smoke-tested, and the way to its metrics checked.
func (k *Target) startCandidate(ctx context.Context, rel deploy.Release, replicas int32) (*canary, error) {
	c := &canary{k: k, res: k.newResult(rel)}
	if k.cfg.REST == nil {
		return c, fmt.Errorf("%w: a canary or shadow reads each pod's /metrics through the API server's pod proxy, and this deploy has no API server connection; deploy with a kubeconfig", ErrCannotAnalyse)
	}
	rel, live, err := k.prepare(ctx, rel, c.res)
	if err != nil {
		return c, err
	}
	if live == "" {
		return c, fmt.Errorf("%w: service %s/%s does not exist yet, so there is no live release to compare with; deploy the first release with --strategy direct",
			deploy.ErrInvalidRollout, k.cfg.Namespace, k.cfg.Name)
	}
	c.rel, c.stable, c.cand = rel, live, other(live)
	c.res.Instance = k.deploymentName(c.cand)
	idle, err := k.deployment(ctx, c.cand)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return c, fmt.Errorf("read deployment %s: %w", c.res.Instance, err)
	default:
		c.prev = idle
	}
	plan := deploy.Plan{
		{Name: "apply-candidate", Run: func(ctx context.Context) error { return k.apply(ctx, rel, c.cand, c.prev, replicas) },
			Undo: func(ctx context.Context, cause error) error { return k.putBack(ctx, c.cand, c.prev, cause) }},
		{Name: "rollout", Run: func(ctx context.Context) error { return k.waitRollout(ctx, c.cand, rel) }},
		{Name: "smoke", Run: func(ctx context.Context) error {
			if err := k.smoke(ctx, c.cand, rel); err != nil {
				return fmt.Errorf("%w; the Service still selects %s alone", err, c.stable)
			}
			return nil
		}},
	}
	return c, plan.Run(ctx, &c.res.Steps)
}

// replicasFor is how many candidate pods beside total stable ones give it about weight percent
// of the traffic (at least one).
func replicasFor(weight int, total int32) int32 {
	c := math.Round(float64(weight) * float64(total) / float64(100-weight))
	return int32(max(1, c))
}

// Shift scales the candidate to its share, then (the first time) has the Service select both
// colours, and waits until the Service's endpoints are exactly those pods.
func (c *canary) Shift(ctx context.Context, weight int) (float64, error) {
	k := c.k
	n := replicasFor(weight, k.cfg.Replicas)
	if err := k.scale(ctx, c.cand, n); err != nil {
		return 0, err
	}
	if err := k.waitRollout(ctx, c.cand, c.rel); err != nil {
		return 0, fmt.Errorf("candidate %s at %d pods: %w", k.deploymentName(c.cand), n, err)
	}
	if !c.split {
		if err := k.splitService(ctx, c.stable); err != nil {
			return 0, err
		}
		c.split = true
	}
	if err := k.waitEndpointCounts(ctx, map[string]int{c.stable: int(k.cfg.Replicas), c.cand: int(n)}); err != nil {
		return 0, fmt.Errorf("service %s with %d stable and %d candidate pods: %w", k.cfg.Name, k.cfg.Replicas, n, err)
	}
	return float64(n) / float64(n+k.cfg.Replicas), nil
}

// splitService has the Service select the pods of both colours, noting which one is stable.
func (k *Target) splitService(ctx context.Context, stable string) error {
	api := k.cfg.Client.CoreV1().Services(k.cfg.Namespace)
	svc, err := api.Get(ctx, k.cfg.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read service %s: %w", k.cfg.Name, err)
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[annotationStable] = stable
	svc.Spec.Selector = map[string]string{labelApp: k.cfg.Name}
	if _, err := api.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("split service %s between both colours: %w", k.cfg.Name, err)
	}
	return nil
}

// Scrape reads /metrics of every ready pod of each colour through the API server's pod proxy
// and adds each colour's up.
func (c *canary) Scrape(ctx context.Context) (stable, candidate *analysis.Snapshot, err error) {
	if stable, err = c.k.scrapeColour(ctx, c.stable); err != nil {
		return nil, nil, err
	}
	if candidate, err = c.k.scrapeColour(ctx, c.cand); err != nil {
		return nil, nil, err
	}
	return stable, candidate, nil
}

func (k *Target) scrapeColour(ctx context.Context, colour string) (*analysis.Snapshot, error) {
	httpClient, err := rest.HTTPClientFor(k.cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("%w: HTTP client for the API server: %w", ErrCannotAnalyse, err)
	}
	pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: k.podSelector(colour)})
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", colour, err)
	}
	var snaps []*analysis.Snapshot
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || !podReady(&pod) {
			continue
		}
		s, err := analysis.Scrape(ctx, httpClient, k.podProxy(pod.Name)+"/metrics")
		if err != nil {
			return nil, fmt.Errorf("%w: pod %s: %w", ErrCannotAnalyse, pod.Name, err)
		}
		snaps = append(snaps, s)
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("%w: no ready pod of %s", ErrCannotAnalyse, colour)
	}
	return analysis.Sum(snaps...), nil
}

// Promote scales the candidate to the full set, switches the Service to it alone and waits
// for its endpoints, then scales the old colour to its idle pods: blue-green's last steps.
func (c *canary) Promote(ctx context.Context) (*deploy.Result, error) {
	k := c.k
	res := &deploy.Result{Image: c.rel.Image, ImageDigest: c.res.ImageDigest, URL: c.res.URL, Instance: k.deploymentName(c.cand),
		ModelName: c.res.ModelName, ModelVersion: c.res.ModelVersion, Smoke: c.res.Smoke}
	plan := deploy.Plan{
		{Name: "scale-candidate", Run: func(ctx context.Context) error {
			if err := k.scale(ctx, c.cand, k.cfg.Replicas); err != nil {
				return err
			}
			return k.waitRollout(ctx, c.cand, c.rel)
		}},
		{Name: "switch", Run: func(ctx context.Context) error { return k.switchTo(ctx, c.rel, c.cand) }},
		{Name: "endpoints", Run: func(ctx context.Context) error { return k.waitEndpoints(ctx, c.cand) }},
	}
	if k.cfg.IdleReplicas != k.cfg.Replicas {
		plan = append(plan, deploy.Action{Name: "scale-old", Run: func(ctx context.Context) error { return k.scale(ctx, c.stable, k.cfg.IdleReplicas) }})
	}
	if err := plan.Run(ctx, &res.Steps); err != nil {
		return res, c.Abort(ctx, fmt.Errorf("promote %s: %w", res.Instance, err))
	}
	return res, nil
}

// Abort switches the Service back to the stable colour alone (it never lost a pod), waits
// until its endpoints are stable's only, and gives the idle colour back what it ran.
func (c *canary) Abort(ctx context.Context, cause error) error {
	k := c.k
	ctx = context.WithoutCancel(ctx)
	if err := k.switchTo(ctx, c.rel, c.stable); err != nil {
		return fmt.Errorf("%w; and switching the Service back to %s failed: %v", cause, c.stable, err)
	}
	c.split = false
	if err := k.waitEndpoints(ctx, c.stable); err != nil {
		return fmt.Errorf("%w; the Service selects %s again but its endpoints did not settle: %v", cause, c.stable, err)
	}
	return k.putBack(ctx, c.cand, c.prev, fmt.Errorf("%w; the Service selects %s alone again", cause, c.stable))
}

// waitEndpointCounts waits until the Service's ready endpoints are exactly want[colour] pods of
// each colour named, and none of another.
func (k *Target) waitEndpointCounts(ctx context.Context, want map[string]int) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RolloutTimeout)
	defer cancel()
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelApp + "=" + k.cfg.Name})
		if err != nil {
			return false, fmt.Errorf("list pods of %s: %w", k.cfg.Name, err)
		}
		colourOf := map[string]string{}
		for _, p := range pods.Items {
			colourOf[p.Name] = p.Labels[labelColour]
		}
		slices, err := k.cfg.Client.DiscoveryV1().EndpointSlices(k.cfg.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + k.cfg.Name})
		if err != nil {
			return false, fmt.Errorf("list endpoint slices of service %s: %w", k.cfg.Name, err)
		}
		got := map[string]int{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.TargetRef == nil || e.Conditions.Ready == nil || !*e.Conditions.Ready {
					continue
				}
				got[colourOf[e.TargetRef.Name]]++
			}
		}
		for colour, n := range got {
			if want[colour] != n {
				return false, nil
			}
		}
		return len(got) == len(want), nil
	})
}
