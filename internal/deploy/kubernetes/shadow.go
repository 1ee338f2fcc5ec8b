package kubernetes

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/modelship/modelship/internal/deploy"
)

// The model server's settings that make it mirror requests (see serving.Config.ShadowURL).
const (
	envShadowURL    = "MODELSHIP_SHADOW_URL"
	envShadowSample = "MODELSHIP_SHADOW_SAMPLE"
)

// shadow is a candidate on the idle colour that the live pods mirror requests to, through a
// Service of its own; it answers no client.
type shadow struct {
	*canary
	service string
}

// StartShadow runs the candidate on the idle colour with the full set of pods (a sample of 1
// mirrors every live request), smoke-tests it, gives it the Service NAME-shadow and rolls the
// live pods over to mirror the sample share of their requests to that Service.
func (k *Target) StartShadow(ctx context.Context, rel deploy.Release, sample float64) (deploy.Observed, *deploy.Result, error) {
	c, err := k.startCandidate(ctx, rel, k.cfg.Replicas)
	if err != nil {
		return nil, c.res, err
	}
	s := &shadow{canary: c, service: k.cfg.Name + "-shadow"}
	var url string
	plan := deploy.Plan{
		{Name: "shadow-service", Run: func(ctx context.Context) (err error) { url, err = s.ensureService(ctx); return err }},
		{Name: "mirror", Run: func(ctx context.Context) error {
			return k.setStableEnv(ctx, c.stable, map[string]string{envShadowURL: url, envShadowSample: strconv.FormatFloat(sample, 'g', -1, 64)})
		}},
	}
	if err := plan.Run(ctx, &c.res.Steps); err != nil {
		return nil, c.res, s.Abort(ctx, err)
	}
	return s, c.res, nil
}

// ensureService creates the Service that selects the candidate's pods and returns the URL the
// live pods mirror to: its cluster IP, which stays put for the Service's life and needs no DNS.
func (s *shadow) ensureService(ctx context.Context) (string, error) {
	k := s.k
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.service, Namespace: k.cfg.Namespace, Labels: map[string]string{labelApp: k.cfg.Name}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{labelApp: k.cfg.Name, labelColour: s.cand},
			Ports:    []corev1.ServicePort{{Name: "http", Port: k.cfg.Port, TargetPort: intstr.FromString("http")}},
		},
	}
	api := k.cfg.Client.CoreV1().Services(k.cfg.Namespace)
	if err := createOrUpdate(ctx, api, "service", want, func(cur *corev1.Service) { cur.Spec.Selector = want.Spec.Selector }); err != nil {
		return "", err
	}
	svc, err := api.Get(ctx, s.service, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read service %s: %w", s.service, err)
	}
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		return fmt.Sprintf("http://%s:%d", ip, k.cfg.Port), nil
	}
	return "", fmt.Errorf("service %s has no cluster IP to mirror to", s.service)
}

func (s *shadow) deleteService(ctx context.Context) error {
	err := s.k.cfg.Client.CoreV1().Services(s.k.cfg.Namespace).Delete(ctx, s.service, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete service %s: %w", s.service, err)
	}
	return nil
}

// setStableEnv rolls the live colour's pods over with the model server's shadow settings set
// (or, with env nil, removed), and waits until they all run so: a rolling update, so the live
// colour keeps serving throughout.
func (k *Target) setStableEnv(ctx context.Context, colour string, env map[string]string) error {
	api := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace)
	name := k.deploymentName(colour)
	var gitSHA string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read deployment %s: %w", name, err)
		}
		gitSHA = d.Spec.Template.Labels[deploy.LabelGitSHA]
		cs := d.Spec.Template.Spec.Containers
		if len(cs) == 0 {
			return fmt.Errorf("deployment %s has no container", name)
		}
		kept := cs[0].Env[:0:0]
		for _, e := range cs[0].Env {
			if !strings.HasPrefix(e.Name, "MODELSHIP_SHADOW_") {
				kept = append(kept, e)
			}
		}
		for _, key := range []string{envShadowURL, envShadowSample} {
			if v, ok := env[key]; ok {
				kept = append(kept, corev1.EnvVar{Name: key, Value: v})
			}
		}
		cs[0].Env = kept
		if _, err := api.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update deployment %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := k.waitRollout(ctx, colour, deploy.Release{GitSHA: gitSHA}); err != nil {
		return fmt.Errorf("rolling %s over to mirror: %w", name, err)
	}
	return k.waitEndpoints(ctx, colour)
}

// stopMirroring rolls the live pods back to serving without a shadow and removes its Service.
func (s *shadow) stopMirroring(ctx context.Context) error {
	if err := s.k.setStableEnv(ctx, s.stable, nil); err != nil {
		return fmt.Errorf("stop the live pods mirroring: %w", err)
	}
	return s.deleteService(ctx)
}

// Promote stops the mirroring, then switches the Service to the candidate as blue-green does.
func (s *shadow) Promote(ctx context.Context) (*deploy.Result, error) {
	if err := s.stopMirroring(ctx); err != nil {
		return nil, s.canary.Abort(ctx, err)
	}
	return s.canary.Promote(ctx)
}

// Abort stops the mirroring and gives the idle colour back what it ran; the Service never
// left the live colour.
func (s *shadow) Abort(ctx context.Context, cause error) error {
	ctx = context.WithoutCancel(ctx)
	if err := s.stopMirroring(ctx); err != nil {
		cause = fmt.Errorf("%w; and %v", cause, err)
	}
	return s.k.putBack(ctx, s.cand, s.prev, cause)
}
