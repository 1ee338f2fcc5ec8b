package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/serving/oip"
)

const (
	roleLive      = "live"
	roleCandidate = "candidate"
)

// CheckViaContainerIP verifies a container at its own network address, at its server's port.
const CheckViaContainerIP = "container"

// ErrImageNotFound marks an image reference that no registry has.
var ErrImageNotFound = errors.New("image not found")

// ErrEngineUnreachable marks a Docker engine that does not answer.
var ErrEngineUnreachable = errors.New("docker engine unreachable")

// Config configures the Docker Engine target.
type Config struct {
	Client      *client.Client
	Environment string
	Publish     string // host address of the live server, "127.0.0.1:8000" or ":8000"
	Port        int    // the port the server listens on in its container (default 8000)
	HealthPath  string // its readiness endpoint (default the protocol's, /v2/health/ready)
	// CheckHost is where this process reaches a server to verify it: a host for the published
	// ports (default: the engine's address), or CheckViaContainerIP to use the container's own
	// address on its Docker network (for a deployer that runs in a container on the same host,
	// such as a Dagger function, where the host's loopback is out of reach).
	CheckHost string
	// CheckDial, when set, is how the checks connect to CheckHost: through the SSH session of an
	// ssh:// engine, so they reach the candidate as the serving host does.
	CheckDial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Engine       string        // how messages name the engine; default the client's host
	ReadyTimeout time.Duration // per instance; default 60s
	KeepStopped  int           // earlier containers kept stopped, for their logs; default 2
	RegistryAuth string        // base64 JSON auth for private registries; empty for none
	Args         []string      // extra model-server flags
}

// Target runs the model server as containers on one Docker engine. A deploy verifies a
// candidate container on a side port first, then swaps it onto the published port; the old
// container is stopped, not removed, so a rollback to it is a start instead of a pull.
type Target struct {
	cfg       Config
	hostIP    string
	hostPort  string
	checkHost string
	lost      atomic.Int64 // times the engine was found not taking connections (see answers)
}

// New checks the configuration.
func New(cfg Config) (*Target, error) {
	if cfg.Client == nil {
		return nil, errors.New("docker target: no client")
	}
	if cfg.Environment == "" {
		return nil, errors.New("docker target: no environment")
	}
	if cfg.Publish == "" {
		cfg.Publish = "127.0.0.1:8000"
	}
	host, port, err := net.SplitHostPort(cfg.Publish)
	if err != nil {
		return nil, fmt.Errorf("docker target: publish address %q: want HOST:PORT or :PORT: %w", cfg.Publish, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("docker target: publish port %q is not a port number", port)
	}
	if cfg.Port == 0 {
		cfg.Port = 8000
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("docker target: the server's port %d is not a port number", cfg.Port)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.KeepStopped <= 0 {
		cfg.KeepStopped = 2
	}
	if cfg.Engine == "" {
		cfg.Engine = cfg.Client.DaemonHost()
	}
	d := &Target{cfg: cfg, hostIP: host, hostPort: port, checkHost: cfg.CheckHost}
	if d.checkHost == "" {
		d.checkHost = "127.0.0.1"
		if host != "" && host != "0.0.0.0" {
			d.checkHost = host
		} else if u, err := url.Parse(cfg.Client.DaemonHost()); err == nil && u.Scheme == "tcp" {
			d.checkHost = u.Hostname()
		}
	}
	return d, nil
}

// checkClient is a model server client for a check of the server at url, connecting the way
// the engine is reached.
func (d *Target) checkClient(url string) *oip.Client {
	c := oip.NewClient(url).WithReadyPath(d.cfg.HealthPath)
	if d.cfg.CheckDial != nil {
		c.HTTP.Transport = &http.Transport{DialContext: d.cfg.CheckDial}
	}
	return c
}

// publicURL is where the live server is published.
func (d *Target) publicURL() string {
	host := d.checkHost
	if host == CheckViaContainerIP {
		host = d.hostIP
		if host == "" || host == "0.0.0.0" {
			host = "localhost"
		}
	}
	return "http://" + net.JoinHostPort(host, d.hostPort)
}

// Name is "docker".
func (d *Target) Name() string { return "docker" }

// Deploy runs rel on the published port; see Target.
func (d *Target) Deploy(ctx context.Context, rel deploy.Release) (*deploy.Result, error) {
	res, img, pulled, rel, err := d.prepare(ctx, rel)
	if err != nil {
		return nil, err
	}
	live, err := d.containers(ctx, false)
	if err != nil {
		return nil, err
	}
	if len(live) == 1 && live[0].ImageID == img.ID {
		// Already live (a restore after a failed gate): verify it, and replace it only if it fails.
		res.Reused, res.Instance = true, live[0].ID
		current := &instance{d: d, id: live[0].ID, port: d.hostPort, rel: rel}
		if err := deploy.Plan(current.verification(keep)).Run(ctx, &res.Steps); err == nil {
			res.URL = d.publicURL()
			return res, nil
		}
	}
	// Even a rollback to a release whose stopped container is still here goes through a new
	// candidate: restarting that container would mean stopping the live one before anything is
	// verified, and it would run with its old environment rather than this release's.
	res.Reused = !pulled
	lost := d.lost.Load()
	if err := d.rollOut(ctx, img.ID, live, rel, res); err != nil {
		return res, d.engineLost(ctx, lost, err)
	}
	res.URL = d.publicURL()
	d.prune(ctx, res.Instance)
	return res, nil
}

// prepare checks the engine answers, has (or pulls) rel's image, and checks rel against the
// image's labels, filling in what rel leaves to them.
func (d *Target) prepare(ctx context.Context, rel deploy.Release) (*deploy.Result, image.InspectResponse, bool, deploy.Release, error) {
	res := &deploy.Result{Image: rel.Image}
	var img image.InspectResponse
	var pulled bool
	if _, err := d.cfg.Client.Ping(ctx); err != nil {
		return nil, img, pulled, rel, fmt.Errorf("%w at %s: %w", ErrEngineUnreachable, d.cfg.Engine, err)
	}
	pull := deploy.Plan{{Name: "pull", Run: func(ctx context.Context) (err error) { img, pulled, err = d.ensureImage(ctx, rel.Image); return err }}}
	if err := pull.Run(ctx, &res.Steps); err != nil {
		return nil, img, pulled, rel, err
	}
	res.ImageDigest = repoDigest(rel.Image, img)
	var labels map[string]string
	if img.Config != nil {
		labels = img.Config.Labels
	}
	rel, err := deploy.AgreeWithImage(rel, labels)
	if err == nil {
		rel, err = rel.WithImageSmoke(labels)
	}
	if err != nil {
		return nil, img, pulled, rel, err
	}
	res.ModelName, res.ModelVersion, res.Smoke = rel.ModelName, rel.ModelVersion, rel.Smoke
	return res, img, pulled, rel, nil
}

// ensureImage inspects ref, pulling it first when the engine does not have it.
func (d *Target) ensureImage(ctx context.Context, ref string) (img image.InspectResponse, pulled bool, err error) {
	img, err = d.cfg.Client.ImageInspect(ctx, ref)
	if err == nil {
		return img, false, nil
	}
	if !errdefs.IsNotFound(err) {
		return img, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	rc, err := d.cfg.Client.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: d.cfg.RegistryAuth})
	if err != nil {
		return img, false, pullErr(ref, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return img, false, pullErr(ref, err)
	}
	img, err = d.cfg.Client.ImageInspect(ctx, ref)
	if err != nil {
		return img, true, fmt.Errorf("inspect pulled image %s: %w", ref, err)
	}
	return img, true, nil
}

// repoDigest is the image's digest reference in the repository ref names. An image pushed to
// several registries has a RepoDigest for each, in no set order; recording another registry's
// would send a rollback somewhere else. Without one (a local build), it is the image ID.
func repoDigest(ref string, img image.InspectResponse) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return img.ID
	}
	for _, rd := range img.RepoDigests {
		if d, err := reference.ParseNormalizedNamed(rd); err == nil && d.Name() == named.Name() {
			return rd
		}
	}
	return img.ID
}

func pullErr(ref string, err error) error {
	msg := err.Error()
	if errdefs.IsNotFound(err) || strings.Contains(msg, "not found") || strings.Contains(msg, "manifest unknown") {
		return fmt.Errorf("%w: %s: %v; check the registry, repository and tag (build-image prints the reference it pushed)", ErrImageNotFound, ref, err)
	}
	return fmt.Errorf("pull image %s: %w", ref, err)
}

// containers lists this environment's live-role containers, running or stopped, newest first.
func (d *Target) containers(ctx context.Context, stopped bool) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", deploy.LabelEnvironment+"="+d.cfg.Environment), filters.Arg("label", deploy.LabelRole+"="+roleLive))
	if stopped {
		f.Add("status", "exited")
		f.Add("status", "created")
	} else {
		f.Add("status", "running")
		f.Add("status", "restarting")
	}
	list, err := d.cfg.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of environment %s: %w", d.cfg.Environment, err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created > list[j].Created })
	return list, nil
}

// rollOut verifies a candidate on a side port, then swaps a container of the same image onto
// the published port. The live container serves until the candidate has passed.
func (d *Target) rollOut(ctx context.Context, imageID string, live []container.Summary, rel deploy.Release, res *deploy.Result) error {
	candidate := &instance{d: d, rel: rel}
	defer candidate.remove(ctx)
	refused := func(err error) error {
		return fmt.Errorf("candidate %s (%s) refused, %s keeps serving: %w", short(candidate.id), rel.Image, describeLive(live), err)
	}
	final := &instance{d: d, port: d.hostPort, rel: rel}
	swap := func(err error) error { return fmt.Errorf("swap %s onto %s: %w", rel.Image, d.cfg.Publish, err) }
	plan := deploy.Plan{{Name: "start-candidate", Run: func(ctx context.Context) error {
		if err := candidate.create(ctx, imageID, roleCandidate, ""); err != nil {
			return err
		}
		return candidate.startOnSidePort(ctx, refused)
	}}}
	plan = append(plan, candidate.verification(refused)...)
	// The swap: the published port can be bound by one container at a time.
	plan = append(plan, d.stopCurrent(live), deploy.Action{
		Name: "start",
		Run: func(ctx context.Context) error {
			err := final.create(ctx, imageID, roleLive, d.hostPort)
			if err == nil {
				err = final.start(ctx)
			}
			if err != nil {
				final.remove(ctx)
				return swap(err)
			}
			return nil
		},
		Undo: func(ctx context.Context, cause error) error { final.remove(ctx); return cause },
	})
	plan = append(plan, final.verification(swap)...)
	if err := plan.Run(ctx, &res.Steps); err != nil {
		return err
	}
	res.Instance = final.id
	return nil
}

// stopCurrent is the step that stops the live containers; its undo starts them again.
func (d *Target) stopCurrent(live []container.Summary) deploy.Action {
	return deploy.Action{
		Name: "stop-current",
		// A stop that failed half-way (the engine went down during it) may have stopped some: the
		// step undoes itself, since the plan undoes only the steps that completed.
		Run: func(ctx context.Context) error {
			if err := d.stopAll(ctx, live); err != nil {
				return d.restore(ctx, live, err)
			}
			return nil
		},
		Undo: func(ctx context.Context, cause error) error { return d.restore(ctx, live, cause) },
	}
}

// restore starts the containers that were live again after a failed swap.
func (d *Target) restore(ctx context.Context, live []container.Summary, cause error) error {
	for _, c := range live {
		start := func(ctx context.Context) error {
			return d.cfg.Client.ContainerStart(ctx, c.ID, container.StartOptions{})
		}
		if err := d.settle(ctx, start); err != nil {
			return fmt.Errorf("%w; and restarting the previous container %s failed too: %v", cause, short(c.ID), err)
		}
	}
	if len(live) == 0 {
		return cause
	}
	return fmt.Errorf("%w; the previous container %s was started again", cause, short(live[0].ID))
}

func (d *Target) stopAll(ctx context.Context, list []container.Summary) error {
	timeout := 10
	for _, c := range list {
		if err := d.cfg.Client.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil {
			return fmt.Errorf("stop container %s: %w", short(c.ID), err)
		}
	}
	return nil
}

// create makes a container of imageID; hostPort "" publishes on a free port.
func (d *Target) create(ctx context.Context, imageID string, rel deploy.Release, role, hostPort string, extraEnv ...string) (string, error) {
	labels := map[string]string{
		deploy.LabelEnvironment: d.cfg.Environment, deploy.LabelRole: role, deploy.LabelImage: rel.Image,
		deploy.LabelModelName: rel.ModelName, deploy.LabelModelVersion: rel.ModelVersion, deploy.LabelGitSHA: rel.GitSHA,
	}
	env := []string{"MODELSHIP_MODEL_NAME=" + rel.ModelName}
	if rel.ModelVersion != "" {
		env = append(env, "MODELSHIP_MODEL_VERSION="+rel.ModelVersion)
	}
	env = append(env, extraEnv...)
	host := &container.HostConfig{PortBindings: nat.PortMap{d.serverPort(): {{HostIP: d.hostIP, HostPort: hostPort}}}}
	if role == roleLive {
		host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	}
	name := fmt.Sprintf("modelship-%s-%s-%s-%d", d.cfg.Environment, role, short(rel.GitSHA), time.Now().UnixNano())
	created, err := d.cfg.Client.ContainerCreate(ctx, &container.Config{
		Image: imageID, Env: env, Labels: labels, Cmd: d.cfg.Args,
		ExposedPorts: nat.PortSet{d.serverPort(): {}},
	}, host, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("create container for %s: %w", rel.Image, err)
	}
	return created.ID, nil
}

func containerIP(info container.InspectResponse) string {
	if info.NetworkSettings == nil {
		return ""
	}
	for _, n := range info.NetworkSettings.Networks {
		if n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

// logTail returns the last lines a container printed, for error messages.
func (d *Target) logTail(ctx context.Context, id string) string {
	rc, err := d.cfg.Client.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return "unavailable"
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return "unavailable"
	}
	return strings.TrimSpace(strings.ReplaceAll(out.String(), "\n", " | "))
}

// prune removes stopped containers of the environment beyond KeepStopped, oldest first.
func (d *Target) prune(ctx context.Context, keep string) {
	stopped, err := d.containers(ctx, true)
	if err != nil {
		return
	}
	kept := 0
	for _, c := range stopped {
		if c.ID == keep {
			continue
		}
		kept++
		if kept > d.cfg.KeepStopped {
			_ = d.cfg.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{})
		}
	}
}

func describeLive(live []container.Summary) string {
	if len(live) == 0 {
		return "nothing"
	}
	return fmt.Sprintf("container %s (%s)", short(live[0].ID), live[0].Labels[deploy.LabelImage])
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Connection is how to reach a Docker engine, and how far to trust the way there.
type Connection struct {
	Host string // unix:///path, tcp://host:port or ssh://user@host[:port][/socket]; empty: DOCKER_HOST, else the default socket
	TLS  TLSFiles
	SSH  SSHFiles
	// AllowInsecureTCP accepts tcp:// without verified TLS. That API is unauthenticated: whoever
	// reaches the port is root on the serving host, so it is refused unless asked for.
	AllowInsecureTCP bool
}

// TLSFiles are the PEM files of a verified TLS connection (DOCKER_TLS_VERIFY semantics): the CA
// the engine's certificate must chain to, and this client's certificate and key.
type TLSFiles struct{ CA, Cert, Key string }

func (f TLSFiles) given() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// ErrInsecureHost marks a tcp:// engine that would be reached without verified TLS.
var ErrInsecureHost = errors.New("unauthenticated Docker API refused")

// Dial connects to the Docker engine conn names (the DOCKER_HOST conventions, DOCKER_CERT_PATH
// and DOCKER_TLS_VERIFY included), negotiating the API version so older engines work, and
// returns the target on it. A tcp:// engine needs verified TLS, from conn.TLS or from
// DOCKER_CERT_PATH with DOCKER_TLS_VERIFY set, unless conn.AllowInsecureTCP. An ssh:// engine
// is reached through one SSH session with a pinned host key, and so are the checks of the
// servers it runs. Close the engine when done.
func Dial(conn Connection, cfg Config) (*Target, *Engine, error) {
	host := conn.Host
	if host == "" {
		host = os.Getenv(client.EnvOverrideHost)
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if conn.Host != "" && !isSSH(host) {
		opts = append(opts, client.WithHost(conn.Host))
	}
	tcp := strings.HasPrefix(host, "tcp://") || strings.HasPrefix(host, "http://") || strings.HasPrefix(host, "https://")
	var tunnel *sshEngine
	switch {
	case conn.SSH.given() && !isSSH(host):
		return nil, nil, fmt.Errorf("docker SSH key and known hosts are for an ssh:// engine, not %q", host)
	case isSSH(host) && conn.TLS.given():
		return nil, nil, fmt.Errorf("docker TLS files are for a tcp:// engine, not %q, which SSH secures", host)
	case isSSH(host):
		var err error
		if tunnel, err = dialSSH(context.Background(), host, conn.SSH); err != nil {
			return nil, nil, err
		}
		// The client's own host only names the engine in requests; every connection is a
		// channel of the SSH session.
		opts = append(opts, client.WithHost("http://docker.ssh"), client.WithDialContext(tunnel.dialDocker))
		cfg.Engine, cfg.CheckDial = tunnel.name, tunnel.dialCheck
	case conn.TLS.given() && (conn.TLS.CA == "" || conn.TLS.Cert == "" || conn.TLS.Key == ""):
		return nil, nil, errors.New("docker TLS: give the CA, the client certificate and its key together (--docker-tls-ca, --docker-tls-cert, --docker-tls-key)")
	case conn.TLS.given() && !tcp:
		return nil, nil, fmt.Errorf("docker TLS files are for a tcp:// engine, not %q", host)
	case conn.TLS.given():
		opts = append(opts, client.WithTLSClientConfig(conn.TLS.CA, conn.TLS.Cert, conn.TLS.Key))
	case tcp && !(os.Getenv(client.EnvOverrideCertPath) != "" && os.Getenv(client.EnvTLSVerify) != "") && !conn.AllowInsecureTCP:
		return nil, nil, fmt.Errorf("%w: %s without verified TLS lets whoever reaches it run anything as root on that host; "+
			"give --docker-tls-ca, --docker-tls-cert and --docker-tls-key (or DOCKER_CERT_PATH with DOCKER_TLS_VERIFY=1), "+
			"reach it over ssh://USER@HOST, or accept the risk with --docker-insecure-tcp", ErrInsecureHost, host)
	}
	engine := &Engine{tunnel: tunnel}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		engine.Close()
		return nil, nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	engine.Client = cli
	cfg.Client = cli
	target, err := New(cfg)
	if err != nil {
		engine.Close()
		return nil, nil, err
	}
	return target, engine, nil
}

// Engine is a connected Docker client; closing it also ends the SSH session it goes through.
type Engine struct {
	*client.Client
	tunnel *sshEngine
}

// Close closes the client and the SSH session.
func (e *Engine) Close() error {
	var errs []error
	if e.Client != nil {
		errs = append(errs, e.Client.Close())
	}
	if e.tunnel != nil {
		errs = append(errs, e.tunnel.client.Close())
	}
	return errors.Join(errs...)
}

// serverPort is the server's port inside its container, the one published.
func (d *Target) serverPort() nat.Port {
	return nat.Port(strconv.Itoa(d.cfg.Port) + "/tcp")
}
