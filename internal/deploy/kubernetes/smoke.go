package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/modelship/modelship/serving/oip"

	"github.com/modelship/modelship/internal/deploy"
)

// ErrCannotSmoke marks a deploy that could not reach the new colour's pods to smoke-test them
// and was not told to go without.
var ErrCannotSmoke = errors.New("cannot smoke-test the new pods")

// smoke checks every ready pod of colour before the Service is switched to it: the model
// metadata, and rel's smoke inference unless rel goes without one. The pods are reached through
// the API server's pod proxy with the deployer's own credentials (RBAC: create on pods/proxy),
// so nothing in the cluster has to be exposed; --smoke-url reaches them some other way.
func (k *Target) smoke(ctx context.Context, colour string, rel deploy.Release) error {
	if k.cfg.SmokeURL != nil {
		return deploy.SmokeTest(ctx, oip.NewClient(k.cfg.SmokeURL(colour)).WithReadyPath(k.cfg.HealthPath), rel)
	}
	httpClient, err := rest.HTTPClientFor(k.cfg.REST)
	if err != nil {
		return fmt.Errorf("%w: HTTP client for the API server: %w", ErrCannotSmoke, err)
	}
	pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: k.podSelector(colour)})
	if err != nil {
		return fmt.Errorf("list pods of %s to smoke-test: %w", colour, err)
	}
	checked := 0
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || !podReady(&pod) {
			continue
		}
		c := &oip.Client{BaseURL: k.podProxy(pod.Name), HTTP: httpClient}
		if err := deploy.SmokeTest(ctx, c, rel); err != nil {
			return fmt.Errorf("pod %s: %w", pod.Name, err)
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("%w: no ready pod of %s", ErrCannotSmoke, colour)
	}
	return nil
}

// podProxy is the API server's proxy to the pod's server port.
func (k *Target) podProxy(pod string) string {
	return fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s:%d/proxy", strings.TrimSuffix(k.cfg.REST.Host, "/"), k.cfg.Namespace, pod, k.cfg.Port)
}

// canSmoke refuses, before anything is applied, a release that would switch traffic unchecked.
func (k *Target) canSmoke(rel deploy.Release) error {
	if rel.NoSmoke || k.cfg.SmokeURL != nil || k.cfg.REST != nil {
		return nil
	}
	return fmt.Errorf("%w: no API server connection to reach them through and no --smoke-url; "+
		"deploy with a kubeconfig, give --smoke-url, or verify without a smoke inference with --no-smoke (recorded)", ErrCannotSmoke)
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
