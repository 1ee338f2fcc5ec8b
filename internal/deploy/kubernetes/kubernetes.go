package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/imageref"
	"github.com/modelship/modelship/serving/oip"
)

// Blue-green colours: two Deployments, one Service whose selector names the live one.
const (
	Blue  = "blue"
	Green = "green"

	labelApp    = "app.kubernetes.io/name"
	labelColour = "dev.modelship.colour"
	// oldLabelColour is the colour label before 2026-11-23. A Service that still selects by it
	// is read; an idle Deployment that still carries it is recreated (a selector is immutable).
	oldLabelColour = "modelship.dev/colour"

	// annotationStable names the stable colour on the Service while a canary splits the
	// traffic between both colours (its selector then names none).
	annotationStable = "dev.modelship.stable-colour"

	// MaxRestarts is how often a new pod may crash-loop before the rollout is failed.
	MaxRestarts = 3
)

// ErrRolloutStuck marks a rollout that cannot progress (deadline exceeded, unschedulable pods,
// an image that cannot be pulled, a server that keeps crashing).
var ErrRolloutStuck = errors.New("rollout did not progress")

// hopeless are the waiting reasons a pod does not recover from without a new release.
var hopeless = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true,
}

// Config configures the Kubernetes target.
type Config struct {
	Client           k8s.Interface
	Namespace        string        // default "default"
	Name             string        // base name: Deployments <name>-blue/-green, Service <name>; default "modelship"
	Environment      string        // recorded in labels
	Replicas         int32         // per colour; default 2
	IdleReplicas     int32         // replicas the old colour keeps after a switch (rollback is a selector switch while > 0); default: Replicas
	Port             int32         // container and Service port; default 8000
	HealthPath       string        // the server's readiness endpoint; default /v2/health/ready
	CPURequest       string        // e.g. "100m"; empty: none
	MemoryRequest    string        // e.g. "128Mi"; empty: none
	MemoryLimit      string        // e.g. "512Mi"; empty: none
	ProgressDeadline time.Duration // the Deployment's progressDeadlineSeconds; default 60s
	RolloutTimeout   time.Duration // how long to wait for a rollout or endpoints; default 5m
	// SmokeURL reaches a colour's server for the smoke test some other way than REST.
	SmokeURL func(colour string) string
	// REST is the API server connection the smoke test reaches the new pods through (the pod
	// proxy); Dial sets it. Without it or SmokeURL, only a release with NoSmoke deploys.
	REST *rest.Config
	// Resolve pins a tag to the digest its registry serves (imageref.Resolve), so the pods run
	// and the state records those exact bytes. Nil: the reference is used, and recorded, as given.
	Resolve func(ctx context.Context, ref string) (imageref.Pinned, error)
	// Labels reads the image's labels at its registry (imageref.Labels): the model name and
	// version are checked against them and the smoke inference taken from them. Nil: not read.
	Labels func(ctx context.Context, ref string) (map[string]string, error)
	// NodeSelector is copied into the pod template (used to pin pods to a node pool).
	NodeSelector map[string]string
}

// Target runs the model server blue-green on a cluster: a deploy updates the idle colour,
// waits for its rollout, verifies it, then switches the Service's selector and waits until the
// Service's EndpointSlices hold only the new colour. The old colour keeps running, so a
// rollback to it is a selector switch. (Canary later: weights by replica count or a mesh.)
type Target struct {
	cfg Config
}

// New checks the configuration and fills in defaults.
func New(cfg Config) (*Target, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubernetes target: no client")
	}
	return newTarget(cfg)
}

// RenderManifests writes, as YAML, what a first deploy of rel (to the blue colour) would apply,
// with no cluster at all: for review and for misconfiguration scanners.
func RenderManifests(cfg Config, rel deploy.Release, w io.Writer) error {
	k, err := newTarget(cfg)
	if err != nil {
		return err
	}
	return k.writeManifests(rel, Blue, w)
}

func newTarget(cfg Config) (*Target, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Name == "" {
		cfg.Name = "modelship"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 2
	}
	if cfg.IdleReplicas < 0 || cfg.IdleReplicas > cfg.Replicas {
		return nil, fmt.Errorf("kubernetes target: idle replicas %d must be between 0 and %d", cfg.IdleReplicas, cfg.Replicas)
	}
	if cfg.IdleReplicas == 0 {
		cfg.IdleReplicas = cfg.Replicas
	}
	if cfg.Port <= 0 {
		cfg.Port = 8000
	}
	if cfg.ProgressDeadline <= 0 {
		cfg.ProgressDeadline = time.Minute
	}
	if cfg.RolloutTimeout <= 0 {
		cfg.RolloutTimeout = 5 * time.Minute
	}
	for _, q := range []string{cfg.CPURequest, cfg.MemoryRequest, cfg.MemoryLimit} {
		if q == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q); err != nil {
			return nil, fmt.Errorf("kubernetes target: resource %q: %w", q, err)
		}
	}
	return &Target{cfg: cfg}, nil
}

// Name is "kubernetes".
func (k *Target) Name() string { return "kubernetes" }

func (k *Target) deploymentName(colour string) string { return k.cfg.Name + "-" + colour }

func other(colour string) string {
	if colour == Blue {
		return Green
	}
	return Blue
}

// Manifests are the objects a deploy of rel to colour applies.
func (k *Target) Manifests(rel deploy.Release, colour string) (*appsv1.Deployment, *corev1.Service) {
	return k.manifests(rel, colour, k.cfg.Replicas)
}

func (k *Target) manifests(rel deploy.Release, colour string, replicas int32) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{labelApp: k.cfg.Name, labelColour: colour}
	podLabels := map[string]string{labelApp: k.cfg.Name, labelColour: colour,
		deploy.LabelModelName: rel.ModelName, deploy.LabelModelVersion: deploy.LabelValue(rel.ModelVersion), deploy.LabelGitSHA: rel.GitSHA}
	if k.cfg.Environment != "" {
		podLabels[deploy.LabelEnvironment] = k.cfg.Environment
	}
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	if k.cfg.CPURequest != "" {
		res.Requests[corev1.ResourceCPU] = resource.MustParse(k.cfg.CPURequest)
	}
	if k.cfg.MemoryRequest != "" {
		res.Requests[corev1.ResourceMemory] = resource.MustParse(k.cfg.MemoryRequest)
	}
	if k.cfg.MemoryLimit != "" {
		res.Limits[corev1.ResourceMemory] = resource.MustParse(k.cfg.MemoryLimit)
	}
	deadline := int32(k.cfg.ProgressDeadline / time.Second)
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: k.deploymentName(colour), Namespace: k.cfg.Namespace, Labels: podLabels},
		Spec: appsv1.DeploymentSpec{
			Replicas:                &replicas,
			ProgressDeadlineSeconds: &deadline,
			Selector:                &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{deploy.LabelImage: rel.Image}},
				Spec: corev1.PodSpec{
					NodeSelector:    k.cfg.NodeSelector,
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)},
					Containers: []corev1.Container{{
						Name:  "model-server",
						Image: rel.Image,
						Env: []corev1.EnvVar{{Name: "MODELSHIP_MODEL_NAME", Value: rel.ModelName},
							{Name: "MODELSHIP_MODEL_VERSION", Value: rel.ModelVersion},
							{Name: "MODELSHIP_ADDR", Value: fmt.Sprintf(":%d", k.cfg.Port)}},
						Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: k.cfg.Port}},
						Resources: res,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot: ptr(true), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
							Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: cmp.Or(k.cfg.HealthPath, oip.ReadyPath), Port: intstr.FromInt32(k.cfg.Port)}},
							PeriodSeconds: 2, FailureThreshold: 3,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/v2/health/live", Port: intstr.FromInt32(k.cfg.Port)}},
							PeriodSeconds: 10, FailureThreshold: 3,
						},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.Name, Namespace: k.cfg.Namespace, Labels: map[string]string{labelApp: k.cfg.Name}},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: k.cfg.Port, TargetPort: intstr.FromString("http")}},
		},
	}
	return dep, svc
}

// DryRun writes the manifests a deploy of rel would apply, as YAML, without touching the cluster
// beyond reading which colour is live.
func (k *Target) DryRun(ctx context.Context, rel deploy.Release, w io.Writer) error {
	live, err := k.liveColour(ctx)
	if err != nil {
		return err
	}
	target := Blue
	if live != "" {
		target = other(live)
	}
	return k.writeManifests(rel, target, w)
}

func (k *Target) writeManifests(rel deploy.Release, colour string, w io.Writer) error {
	dep, svc := k.Manifests(rel, colour)
	for _, obj := range []any{dep, svc} {
		out, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", out); err != nil {
			return err
		}
	}
	return nil
}

// liveColour reads the Service's selector ("" when there is no Service yet).
func (k *Target) liveColour(ctx context.Context) (string, error) {
	svc, err := k.cfg.Client.CoreV1().Services(k.cfg.Namespace).Get(ctx, k.cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read service %s/%s: %w", k.cfg.Namespace, k.cfg.Name, err)
	}
	if c := svc.Spec.Selector[labelColour]; c != "" {
		return c, nil
	}
	if c := svc.Annotations[annotationStable]; c != "" {
		// A canary split the traffic between both colours; the stable one is still the live
		// release (a canary that died half-way is finished by the next deploy or rollback).
		return c, nil
	}
	return svc.Spec.Selector[oldLabelColour], nil
}

// Deploy rolls rel out to the idle colour and switches the Service to it.
func (k *Target) Deploy(ctx context.Context, rel deploy.Release) (*deploy.Result, error) {
	res := k.newResult(rel)
	rel, live, err := k.prepare(ctx, rel, res)
	if err != nil {
		return nil, err
	}
	target := Blue
	if live != "" {
		target = other(live)
	}
	if live != "" {
		// The live colour may already run rel (a retried deploy): nothing to switch.
		if cur, err := k.deployment(ctx, live); err == nil && runs(cur, rel.Image) && available(cur) {
			res.Instance, res.Reused = k.deploymentName(live), true
			return res, nil
		}
	}
	res.Instance = k.deploymentName(target)
	idle, err := k.deployment(ctx, target)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read deployment %s: %w", res.Instance, err)
	}
	if err != nil {
		idle = nil
	}
	// The previous release still up on the idle colour makes the rollback a selector switch.
	res.Reused = idle != nil && runs(idle, rel.Image) && available(idle) && *idle.Spec.Replicas == k.cfg.Replicas && current(idle)
	// A failed result still says which steps ran and which one failed.
	err = k.plan(rel, live, target, idle, res).Run(ctx, &res.Steps)
	return res, err
}

func (k *Target) newResult(rel deploy.Release) *deploy.Result {
	return &deploy.Result{Image: rel.Image, ImageDigest: rel.Image,
		URL: fmt.Sprintf("http://%s.%s.svc:%d", k.cfg.Name, k.cfg.Namespace, k.cfg.Port)}
}

// prepare pins rel's image to its digest, reads which colour is live and the image's labels, and
// checks rel against them: everything a rollout needs to know before it touches the cluster.
func (k *Target) prepare(ctx context.Context, rel deploy.Release, res *deploy.Result) (deploy.Release, string, error) {
	var live string
	read := deploy.Plan{{Name: "read", Run: func(ctx context.Context) (err error) { live, err = k.liveColour(ctx); return err }}}
	if k.cfg.Resolve != nil {
		read = append(deploy.Plan{{Name: "resolve", Run: func(ctx context.Context) error {
			pinned, err := k.cfg.Resolve(ctx, rel.Image)
			if err != nil {
				return err
			}
			rel.Image, res.ImageDigest = pinned.Ref, pinned.Digest
			return nil
		}}}, read...)
	}
	var labels map[string]string // none read: the release is taken as given
	if k.cfg.Labels != nil {
		read = append(read, deploy.Action{Name: "labels", Run: func(ctx context.Context) (err error) {
			labels, err = k.cfg.Labels(ctx, rel.Image)
			return err
		}})
	}
	if err := read.Run(ctx, &res.Steps); err != nil {
		return rel, "", err
	}
	rel, err := deploy.AgreeWithImage(rel, labels)
	if err == nil {
		rel, err = rel.WithImageSmoke(labels)
	}
	if err == nil {
		err = k.canSmoke(rel)
	}
	res.ModelName, res.ModelVersion, res.Smoke = rel.ModelName, rel.ModelVersion, rel.Smoke
	return rel, live, err
}

// current says d selects its pods by today's colour label.
func current(d *appsv1.Deployment) bool {
	return d.Spec.Selector != nil && d.Spec.Selector.MatchLabels[labelColour] != ""
}

// plan is the blue-green rollout of rel onto the idle colour target: apply and wait for the
// rollout (unless target already runs rel), smoke-test it where it can be reached, switch the
// Service, wait for its endpoints, and scale the old colour down to its idle replicas. A
// failure puts back what ran: the Service's selector, and the idle colour as it was (prev; nil
// when it did not exist), so a later rollback by switch finds the release it expects.
func (k *Target) plan(rel deploy.Release, live, target string, prev *appsv1.Deployment, res *deploy.Result) deploy.Plan {
	var plan deploy.Plan
	if !res.Reused {
		plan = append(plan,
			deploy.Action{Name: "apply",
				Run:  func(ctx context.Context) error { return k.apply(ctx, rel, target, prev, k.cfg.Replicas) },
				Undo: func(ctx context.Context, cause error) error { return k.putBack(ctx, target, prev, cause) }},
			deploy.Action{Name: "rollout", Run: func(ctx context.Context) error {
				if err := k.waitRollout(ctx, target, rel); err != nil {
					return fmt.Errorf("deployment %s (%s): %w; the Service still selects %q", res.Instance, rel.Image, err, orNone(live))
				}
				return nil
			}})
	}
	// Without a way to the pods, canSmoke let only a release deployed with NoSmoke this far.
	if k.cfg.SmokeURL != nil || k.cfg.REST != nil {
		plan = append(plan, deploy.Action{Name: "smoke", Run: func(ctx context.Context) error {
			if err := k.smoke(ctx, target, rel); err != nil {
				return fmt.Errorf("%w; the Service still selects %q", err, orNone(live))
			}
			return nil
		}})
	}
	plan = append(plan,
		deploy.Action{Name: "switch", Run: func(ctx context.Context) error { return k.switchTo(ctx, rel, target) },
			Undo: func(ctx context.Context, cause error) error {
				if live == "" {
					return cause
				}
				if err := k.switchTo(ctx, rel, live); err != nil {
					return fmt.Errorf("%w; and switching the Service back to %s failed too: %v", cause, live, err)
				}
				return fmt.Errorf("%w; the Service selects %s again", cause, live)
			}},
		deploy.Action{Name: "endpoints", Run: func(ctx context.Context) error { return k.waitEndpoints(ctx, target) }})
	if live != "" && k.cfg.IdleReplicas != k.cfg.Replicas {
		plan = append(plan, deploy.Action{Name: "scale-old", Run: func(ctx context.Context) error { return k.scale(ctx, live, k.cfg.IdleReplicas) }})
	}
	return plan
}

func orNone(colour string) string {
	if colour == "" {
		return "nothing"
	}
	return colour
}

func (k *Target) deployment(ctx context.Context, colour string) (*appsv1.Deployment, error) {
	return k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace).Get(ctx, k.deploymentName(colour), metav1.GetOptions{})
}

func runs(d *appsv1.Deployment, image string) bool {
	cs := d.Spec.Template.Spec.Containers
	return len(cs) == 1 && imageref.Same(cs[0].Image, image)
}

func available(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return want > 0 && s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want
}

// apply creates or updates the colour's Deployment with rel. An idle Deployment still selecting
// by the old colour label is deleted first: its selector cannot be changed in place.
func (k *Target) apply(ctx context.Context, rel deploy.Release, colour string, prev *appsv1.Deployment, replicas int32) error {
	want, _ := k.manifests(rel, colour, replicas)
	api := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace)
	if prev != nil && !current(prev) {
		if err := api.Delete(ctx, prev.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace deployment %s of the old label scheme: %w", prev.Name, err)
		}
	}
	return createOrUpdate(ctx, api, "deployment", want,
		func(cur *appsv1.Deployment) { cur.Labels, cur.Spec = want.Labels, want.Spec })
}

// putBack is apply's undo: the idle colour gets back the spec it had (or goes, when the failed
// deploy created it), so it keeps running the release a rollback by switch would bring back.
func (k *Target) putBack(ctx context.Context, colour string, prev *appsv1.Deployment, cause error) error {
	api := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace)
	name := k.deploymentName(colour)
	if prev == nil {
		if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("%w; and removing the new deployment %s failed too: %v", cause, name, err)
		}
		return fmt.Errorf("%w; deployment %s, which this deploy created, was removed", cause, name)
	}
	// Updated in place, or created again as it was when apply replaced it for its old selector.
	if err := createOrUpdate(ctx, api, "deployment", restorable(prev),
		func(cur *appsv1.Deployment) { cur.Labels, cur.Spec = prev.Labels, prev.Spec }); err != nil {
		return fmt.Errorf("%w; and restoring deployment %s to its previous spec failed too: %v", cause, name, err)
	}
	if available(prev) {
		// It served the release before: wait until it does again, so a rollback right after
		// this is still a selector switch.
		ctx, cancel := context.WithTimeout(ctx, k.cfg.RolloutTimeout)
		defer cancel()
		if err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
			d, err := k.deployment(ctx, colour)
			return err == nil && available(d), err
		}); err != nil {
			return fmt.Errorf("%w; deployment %s was given back its previous spec (%s) but is not available again: %v", cause, name, imageOf(prev), err)
		}
	}
	return fmt.Errorf("%w; deployment %s was given back its previous spec (%s)", cause, name, imageOf(prev))
}

// restorable is a copy of d that can be created again: no server-set fields.
func restorable(d *appsv1.Deployment) *appsv1.Deployment {
	c := d.DeepCopy()
	c.ObjectMeta = metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: d.Labels, Annotations: d.Annotations}
	c.Status = appsv1.DeploymentStatus{}
	return c
}

func imageOf(d *appsv1.Deployment) string {
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		return cs[0].Image
	}
	return "no image"
}

// typedClient is what createOrUpdate needs of a client-go typed client (Deployments, Services).
type typedClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// createOrUpdate creates want, or, when it exists, gives the live object want's fields (merge)
// and updates it, keeping what the cluster set (resource version, status, cluster IP). The
// controllers write an object's status while we work on it: a conflict is read again and retried.
func createOrUpdate[T metav1.Object](ctx context.Context, api typedClient[T], kind string, want T, merge func(cur T)) error {
	name := want.GetName()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create %s %s: %w", kind, name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s %s: %w", kind, name, err)
		}
		merge(cur)
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update %s %s: %w", kind, name, err)
		}
		return nil
	})
}

// waitRollout waits until the colour's Deployment has rolled out, and fails as soon as it
// reports it cannot (the Progressing condition's reason and message say why) or a pod of rel
// is in a state it does not recover from (hopelessPod).
func (k *Target) waitRollout(ctx context.Context, colour string, rel deploy.Release) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RolloutTimeout)
	defer cancel()
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		d, err := k.deployment(ctx, colour)
		if err != nil {
			return false, fmt.Errorf("read deployment: %w", err)
		}
		if err := k.hopelessPod(ctx, colour, rel); err != nil {
			return false, err
		}
		if d.Status.ObservedGeneration >= d.Generation {
			for _, c := range d.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
					return false, fmt.Errorf("%w: %s: %s", ErrRolloutStuck, c.Reason, c.Message)
				}
			}
		}
		return available(d), nil
	})
}

// podSelector selects the pods of one colour.
func (k *Target) podSelector(colour string) string {
	return labelApp + "=" + k.cfg.Name + "," + labelColour + "=" + colour
}

// hopelessPod fails the rollout as soon as a pod of rel on colour cannot pull its image, cannot
// create its container, or has crash-looped MaxRestarts times: waiting out the progress
// deadline would change nothing.
func (k *Target) hopelessPod(ctx context.Context, colour string, rel deploy.Release) error {
	pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: k.podSelector(colour) + "," + deploy.LabelGitSHA + "=" + rel.GitSHA})
	if err != nil {
		return fmt.Errorf("list pods of %s: %w", colour, err)
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			w := c.State.Waiting
			if w == nil {
				continue
			}
			if hopeless[w.Reason] || (w.Reason == "CrashLoopBackOff" && c.RestartCount >= MaxRestarts) {
				return fmt.Errorf("%w: pod %s: %s (restarts %d): %s", ErrRolloutStuck, p.Name, w.Reason, c.RestartCount, w.Message)
			}
		}
	}
	return nil
}

// switchTo points the Service at colour, creating the Service on the first deploy.
func (k *Target) switchTo(ctx context.Context, rel deploy.Release, colour string) error {
	_, want := k.Manifests(rel, colour)
	if err := createOrUpdate(ctx, k.cfg.Client.CoreV1().Services(k.cfg.Namespace), "service", want,
		func(cur *corev1.Service) {
			cur.Spec.Selector = want.Spec.Selector
			delete(cur.Annotations, annotationStable)
		}); err != nil {
		return fmt.Errorf("switch to %s: %w", colour, err)
	}
	return nil
}

// waitEndpoints waits until the Service's EndpointSlices hold ready endpoints, all of them pods
// of colour: only then does traffic reach the new release alone.
func (k *Target) waitEndpoints(ctx context.Context, colour string) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RolloutTimeout)
	defer cancel()
	pods, err := k.cfg.Client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: k.podSelector(colour)})
	if err != nil {
		return fmt.Errorf("list pods of %s: %w", colour, err)
	}
	ofColour := map[string]bool{}
	for _, p := range pods.Items {
		ofColour[p.Name] = true
	}
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		slices, err := k.cfg.Client.DiscoveryV1().EndpointSlices(k.cfg.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + k.cfg.Name})
		if err != nil {
			return false, fmt.Errorf("list endpoint slices of service %s: %w", k.cfg.Name, err)
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.TargetRef == nil || !ofColour[e.TargetRef.Name] {
					return false, nil
				}
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready > 0, nil
	})
}

func (k *Target) scale(ctx context.Context, colour string, replicas int32) error {
	api := k.cfg.Client.AppsV1().Deployments(k.cfg.Namespace)
	d, err := api.Get(ctx, k.deploymentName(colour), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read deployment %s: %w", k.deploymentName(colour), err)
	}
	d.Spec.Replicas = &replicas
	if _, err := api.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("scale %s to %d: %w", d.Name, replicas, err)
	}
	return nil
}

// poll calls check until it reports done, fails, or ctx ends.
func poll(ctx context.Context, every time.Duration, check func() (bool, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func ptr[T any](v T) *T { return &v }

// Dial loads a kubeconfig (path; empty: KUBECONFIG, ~/.kube/config or the in-cluster service
// account) and returns the target on that cluster.
func Dial(path string, cfg Config) (*Target, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	rest, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	// Rollout and endpoint polling run at 10-20 requests/s; client-go's default 5/s would throttle them.
	rest.QPS, rest.Burst = 50, 100
	cs, err := k8s.NewForConfig(rest)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cfg.Client, cfg.REST = cs, rest
	return New(cfg)
}
