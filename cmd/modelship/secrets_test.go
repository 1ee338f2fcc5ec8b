package main_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
)

// A pipeline run hands the CLI its S3 keys and its webhook URL. Whatever the run leaves behind
// — its output, the registry and state buckets (every version), the evidence, the container it
// started and its logs, the layers of the image it deployed — must not carry any of them, in
// the clear or encoded.
func TestNoSecretLeaksIntoOutputStateEvidenceContainerOrImage(t *testing.T) {
	docker := testenv.Docker(t)
	reg := testenv.SharedRegistry(t)
	bases := testenv.EnsureBaseImages(t, docker)
	c := newCLI(t)
	ctx := context.Background()

	// Made per run so nothing but this run can put them anywhere; the secret key carries the
	// characters ('+', '/') that URL, JSON and base64 encodings rewrite, as AWS keys do.
	sec := testSecrets{
		AccessKey: "AKIAMS" + rand.Text()[:14],
		SecretKey: "sk+" + rand.Text() + "/" + rand.Text()[:8],
		Token:     "whtok-" + rand.Text(),
		Stale:     "sk+" + rand.Text() + "/" + rand.Text()[:8],
	}
	// A store of this run's own whose only keys are the secret ones: the CLI never holds others.
	own := testenv.StartMinIOAs(t, sec.AccessKey, sec.SecretKey)
	c.srv = own
	c.set("AWS_ENDPOINT_URL_S3", own.Config().Endpoint)
	c.set("AWS_ACCESS_KEY_ID", sec.AccessKey)
	c.set("AWS_SECRET_ACCESS_KEY", sec.SecretKey)
	c.set("MODELSHIP_MODELS_BUCKET", own.Bucket(t, "models"))
	hooks := newWebhookRecorder(t)
	sec.WebhookURL = hooks.URL + "/hooks/T0MODELSHIP/" + sec.Token
	scan := newSecretScan(sec)

	modelsBucket := c.bucket("MODELSHIP_MODELS_BUCKET")
	// Versioned, so an object the CLI rewrote is still there to be read in every form it had.
	require.NoError(t, c.srv.Client(t).EnableVersioning(ctx, modelsBucket))
	stateBucket := "state-secrets-" + strings.ToLower(rand.Text()[:8])
	c.set("MODELSHIP_STATE_BUCKET", stateBucket) // made by the first deploy, with the user's keys
	c.set("MODELSHIP_WEBHOOK_URL", sec.WebhookURL)
	c.set("MODELSHIP_PIPELINE_RUN", "secrets-"+rand.Text()[:6])
	env := "secrets-" + strings.ToLower(rand.Text()[:8])
	c.set("MODELSHIP_ENVIRONMENT", env)
	t.Cleanup(func() { testenv.RemoveEnvironmentContainers(docker, env) })
	evidenceFile := filepath.Join(c.bucket("MODELSHIP_EVIDENCE_DIR"), "evidence.json")

	// Each stage rewrites evidence.json, so it is read after every run that changed it, not
	// once at the end.
	runs := 0
	var lastEvidence []byte
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, code := c.run(args...)
		cmdline := "modelship " + strings.Join(args, " ")
		require.Equal(t, wantCode, code, "%s: %s", cmdline, out)
		runs++
		scan.scan(fmt.Sprintf("output of run %d (%s)", runs, cmdline), []byte(out))
		if raw, err := os.ReadFile(evidenceFile); err == nil && !bytes.Equal(raw, lastEvidence) {
			lastEvidence = raw
			scan.scan(fmt.Sprintf("%s written by run %d (%.40s...)", evidenceFile, runs, cmdline), raw)
			scan.counts["evidence files read"]++
		}
		return out
	}

	// The stages of a pipeline, in order: push the model, resolve and pull it for the build,
	// record the build's evidence, deploy, inspect the state, roll back.
	model := projectpath.Join(t, "models/digits-reference.onnx")
	run(0, "model", "push", model, "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA, "--metadata", "accuracy=0.9733", "--gzip")
	run(0, "--json", "model", "resolve", "--name", "digits", "--git-sha", gitSHA)
	pulled := filepath.Join(t.TempDir(), "pulled", "model.onnx")
	require.NoError(t, os.MkdirAll(filepath.Dir(pulled), 0o755))
	run(0, "model", "pull", "--name", "digits", "--git-sha", gitSHA, "-o", pulled)
	run(0, "--json", "model", "ls", "--name", "digits")
	// The pipeline bakes the pulled file into the image; building from the repository's copy
	// bakes the same bytes, since the harness builds only from the project's own tree.
	want, err := os.ReadFile(model)
	require.NoError(t, err)
	got, err := os.ReadFile(pulled)
	require.NoError(t, err)
	require.Equal(t, want, got, "the image bakes exactly what model pull wrote")

	ref := reg.Addr + "/secrets-digits:" + gitSHA
	testenv.BuildServerImage(t, docker, bases, testenv.BuildOptions{Tag: ref, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"MODEL_NAME": "digits", "MODEL_VERSION": "1.0.0", "REVISION": gitSHA}})
	testenv.Push(t, docker, ref)
	run(0, "evidence", "--stage", "build-image", "--model-name", "digits", "--model-version", "1.0.0",
		"--input", "git_sha="+gitSHA, "--input", "model_resolved_by=git-sha", "--config", "registry="+ref,
		"--config", "config_source=flags and environment", "--output", "image="+ref)

	run(3, "state", "show")
	common := []string{"--publish", testenv.FreeAddr(t), "--smoke-fixture", projectpath.Join(t, "tests/fixtures/digits_validation.json")}
	deployArgs := append([]string{"deploy", "--image", ref, "--model-version", "1.0.0", "--git-sha", gitSHA, "--branch", "main"}, common...)
	run(0, deployArgs...)
	run(0, "state", "show")
	run(0, "--json", "state", "show")
	run(0, append([]string{"rollback", "--reason", "secrets scan: put the live release back"}, common...)...)
	run(0, "--json", "state", "show")
	require.GreaterOrEqual(t, hooks.count(), 2, "the deploy and the rollback each called the webhook")
	for _, p := range hooks.paths() {
		assert.Equal(t, "/hooks/T0MODELSHIP/"+sec.Token, p, "the webhook was called at the secret URL")
	}

	// The failure paths print what went wrong, and that is where URLs and keys tend to slip
	// out: a webhook that is down, an image no registry has.
	c.set("MODELSHIP_WEBHOOK_URL", "http://"+testenv.FreeAddr(t)+"/hooks/T0MODELSHIP/"+sec.Token)
	out := run(3, append([]string{"deploy", "--image", reg.Addr + "/secrets-digits:missing", "--model-version", "1.0.0",
		"--git-sha", gitSHA, "--branch", "main"}, common...)...)
	assert.Contains(t, out, "webhook notification failed", "the failed notification was logged, so its log was scanned")
	c.set("MODELSHIP_WEBHOOK_URL", sec.WebhookURL)
	c.set("AWS_SECRET_ACCESS_KEY", sec.Stale) // a rotated key the pipeline was not told about
	run(1, "model", "pull", "--name", "digits", "--git-sha", gitSHA, "-o", pulled)
	run(1, "deploy", "--image", ref, "--model-version", "1.0.0", "--git-sha", gitSHA, "--branch", "main")
	c.set("AWS_SECRET_ACCESS_KEY", sec.SecretKey)

	scan.webhooks(hooks)
	scan.localFiles(t, "evidence folder", c.bucket("MODELSHIP_EVIDENCE_DIR"))
	scan.localFiles(t, "model cache", c.bucket("MODELSHIP_CACHE_DIR"))
	scan.localFiles(t, "model pull output", filepath.Dir(pulled))
	admin := c.srv.Client(t)
	scan.bucket(t, admin, modelsBucket)
	scan.bucket(t, admin, stateBucket)
	scan.containers(t, docker, env)

	t.Logf("scanned for %d forms of %d secrets: %s", len(scan.needles), len(sec.all()), scan.summary())
	assert.GreaterOrEqual(t, scan.counts["evidence files read"], 4, "build-image, deploy, rollback and the failed deploy each wrote one")
	assert.GreaterOrEqual(t, scan.counts["object versions"], 6, "the model's artifact and manifest, the state and its evidence, in their versions")
	assert.GreaterOrEqual(t, scan.counts["evidence objects"], 2, "the deploy's and the rollback's evidence in the state bucket")
	assert.GreaterOrEqual(t, scan.counts["containers"], 1)
	assert.GreaterOrEqual(t, scan.counts["image layers"], 3, "the runtime base, the model and the binary")
	assert.Zero(t, len(scan.hits), "secrets found where they must never be:\n%s", strings.Join(scan.hits, "\n"))
}

// The scan must be able to fail: every secret, in every form it looks for, planted in each kind
// of place it reads (a buffer, a file inside a gzipped image layer, an old object version) is found
// and named.
func TestSecretScanFindsPlantedSecrets(t *testing.T) {
	sec := testSecrets{AccessKey: "AKIAMS" + rand.Text()[:14], SecretKey: "sk+" + rand.Text() + "/" + rand.Text()[:8],
		Token: "whtok-" + rand.Text(), Stale: "sk+" + rand.Text() + "/" + rand.Text()[:8]}
	sec.WebhookURL = "https://hooks.example.com/services/" + sec.Token
	for name, value := range sec.all() {
		planted := map[string][]byte{
			"plain":         []byte("log line: " + value + " end"),
			"query-escaped": []byte("u=" + url.QueryEscape(value) + "&x=1"),
			"json":          mustJSON(t, map[string]string{"k": value}),
		}
		for k := 0; k < 3; k++ {
			stream := append(append([]byte(strings.Repeat("x", 7+k)), value...), " tail"...)
			planted[fmt.Sprintf("base64 at offset %d", k)] = []byte(base64.StdEncoding.EncodeToString(stream))
			planted[fmt.Sprintf("base64url at offset %d", k)] = []byte(base64.RawURLEncoding.EncodeToString(stream))
		}
		for form, data := range planted {
			scan := newSecretScan(sec)
			scan.scan("planted "+form, data)
			// A URL holds its token too, so one plant may give several hits: the one for this
			// secret must be among them, naming the secret and the place.
			found := false
			for _, h := range scan.hits {
				found = found || strings.HasPrefix(h, name+" (") && strings.Contains(h, " in planted "+form+" at byte ")
			}
			assert.True(t, found, "%s planted %s: hits %v", name, form, scan.hits)
		}
	}

	// A secret in a file of a gzipped layer of a saved image.
	var layer bytes.Buffer
	gz := gzip.NewWriter(&layer)
	writeTar(t, gz, map[string][]byte{"etc/app.conf": []byte("key=" + sec.SecretKey + "\n"), "bin/tool": []byte("clean")})
	require.NoError(t, gz.Close())
	var saved bytes.Buffer
	writeTar(t, &saved, map[string][]byte{"manifest.json": []byte(`[{"Layers":["abc/layer.tar"]}]`), "abc/layer.tar": layer.Bytes()})
	scan := newSecretScan(sec)
	scan.imageArchive(t, "image x", &saved)
	require.Len(t, scan.hits, 1, "exactly the planted file: %v", scan.hits)
	assert.Contains(t, scan.hits[0], "abc/layer.tar: etc/app.conf")
	assert.Equal(t, 1, scan.counts["image layers"])

	// A secret in an object version that a later write replaced.
	srv := testenv.SharedMinIO(t)
	mc := srv.Client(t)
	ctx := context.Background()
	bucket := srv.Bucket(t, "planted")
	require.NoError(t, mc.EnableVersioning(ctx, bucket))
	for _, body := range []string{"token=" + sec.Token, "clean"} {
		_, err := mc.PutObject(ctx, bucket, "prod/deploy_state.json", strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	scan = newSecretScan(sec)
	scan.bucket(t, mc, bucket)
	require.Len(t, scan.hits, 1, "only the replaced version: %v", scan.hits)
	assert.Contains(t, scan.hits[0], "s3://"+bucket+"/prod/deploy_state.json?versionId=")
	assert.Equal(t, 2, scan.counts["object versions"])
}

// testSecrets are the values a pipeline run is given and must keep to itself.
type testSecrets struct {
	AccessKey, SecretKey, Token, WebhookURL string
	Stale                                   string // a secret key that was rotated away
}

func (s testSecrets) all() map[string]string {
	return map[string]string{"S3 access key": s.AccessKey, "S3 secret key": s.SecretKey,
		"webhook token": s.Token, "webhook URL": s.WebhookURL, "stale S3 secret key": s.Stale}
}

type needle struct {
	secret, form string
	value        []byte
}

// secretScan looks for every form of every secret in whatever it is shown, and remembers what
// it read so a run that read nothing cannot pass.
type secretScan struct {
	needles []needle
	hits    []string
	counts  map[string]int
	bytes   int64
}

func newSecretScan(sec testSecrets) *secretScan {
	s := &secretScan{counts: map[string]int{}}
	for name, value := range sec.all() {
		seen := map[string]bool{}
		add := func(form, v string) {
			if v != "" && !seen[v] {
				seen[v] = true
				s.needles = append(s.needles, needle{secret: name, form: form, value: []byte(v)})
			}
		}
		add("plain", value)
		add("query-escaped", url.QueryEscape(value))
		add("path-escaped", url.PathEscape(value))
		add("JSON-escaped", strings.ReplaceAll(value, "/", `\/`))
		for k := 0; k < 3; k++ {
			add(fmt.Sprintf("base64 (offset %d)", k), base64Core(base64.StdEncoding, value, k))
			add(fmt.Sprintf("base64url (offset %d)", k), base64Core(base64.URLEncoding, value, k))
		}
	}
	return s
}

// base64Core is the part of the base64 encoding of value that every stream holding value at an
// offset ≡ k (mod 3) contains, whatever surrounds it: the 4-character groups made only of
// value's bytes.
func base64Core(enc *base64.Encoding, value string, k int) string {
	in := append(make([]byte, k), value...)
	out := enc.EncodeToString(in)
	start, end := 0, len(out)
	if k > 0 {
		start = 4
	}
	if len(in)%3 != 0 {
		end -= 4
	}
	if end-start < 12 {
		return ""
	}
	return out[start:end]
}

// scan looks in data, and in what data decompresses to when it is gzip.
func (s *secretScan) scan(where string, data []byte) {
	s.bytes += int64(len(data))
	for _, n := range s.needles {
		if i := bytes.Index(data, n.value); i >= 0 {
			// What comes before the hit says what put it there, without repeating the secret.
			before := string(data[max(0, i-48):i])
			s.hits = append(s.hits, fmt.Sprintf("%s (%s) in %s at byte %d, after %q", n.secret, n.form, where, i, before))
		}
	}
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				s.scan(where+" (gunzipped)", plain)
			}
		}
	}
}

func (s *secretScan) summary() string {
	var parts []string
	for _, k := range []string{"evidence files read", "local files", "object versions", "evidence objects", "webhook requests",
		"containers", "images", "image layers", "files in image layers"} {
		parts = append(parts, fmt.Sprintf("%d %s", s.counts[k], k))
	}
	return fmt.Sprintf("%s; %d bytes read", strings.Join(parts, ", "), s.bytes)
}

func (s *secretScan) localFiles(t *testing.T, what, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s.scan(what+" file "+path, raw)
		s.counts["local files"]++
		return nil
	}))
}

// bucket reads every version of every object, with its key and metadata.
func (s *secretScan) bucket(t *testing.T, mc *minio.Client, bucket string) {
	t.Helper()
	ctx := context.Background()
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
		require.NoError(t, obj.Err, "list versions of s3://%s", bucket)
		where := fmt.Sprintf("s3://%s/%s?versionId=%s", bucket, obj.Key, obj.VersionID)
		s.scan(where+" (key)", []byte(obj.Key))
		if obj.IsDeleteMarker {
			continue
		}
		info, err := mc.StatObject(ctx, bucket, obj.Key, minio.StatObjectOptions{VersionID: obj.VersionID})
		require.NoError(t, err, where)
		s.scan(where+" (metadata)", mustJSON(t, map[string]any{"headers": info.Metadata, "user": info.UserMetadata, "tags": info.UserTags}))
		r, err := mc.GetObject(ctx, bucket, obj.Key, minio.GetObjectOptions{VersionID: obj.VersionID})
		require.NoError(t, err, where)
		raw, err := io.ReadAll(r)
		r.Close()
		require.NoError(t, err, where)
		s.scan(where, raw)
		s.counts["object versions"]++
		if strings.Contains(obj.Key, "/evidence/") {
			s.counts["evidence objects"]++
		}
	}
}

// containers reads what the engine keeps of every container of env (live or not) and of the
// images they run: inspect output, logs, history, and every file of every layer.
func (s *secretScan) containers(t *testing.T, docker *client.Client, env string) {
	t.Helper()
	ctx := context.Background()
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "dev.modelship.environment="+env))})
	require.NoError(t, err)
	images := map[string]bool{}
	for _, ct := range list {
		info, err := docker.ContainerInspect(ctx, ct.ID)
		require.NoError(t, err)
		s.scan("inspect of container "+info.Name, mustJSON(t, info))
		logs, err := docker.ContainerLogs(ctx, ct.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		require.NoError(t, err)
		var out bytes.Buffer
		_, err = stdcopy.StdCopy(&out, &out, logs)
		logs.Close()
		require.NoError(t, err)
		s.scan("logs of container "+info.Name, out.Bytes())
		s.counts["containers"]++
		images[info.Image] = true
	}
	for id := range images {
		img, err := docker.ImageInspect(ctx, id)
		require.NoError(t, err)
		s.scan("inspect of image "+id, mustJSON(t, img))
		hist, err := docker.ImageHistory(ctx, id)
		require.NoError(t, err)
		s.scan("history of image "+id, mustJSON(t, hist))
		rc, err := docker.ImageSave(ctx, []string{id})
		require.NoError(t, err)
		s.imageArchive(t, "image "+id, rc)
		rc.Close()
		s.counts["images"]++
	}
}

// imageArchive reads a `docker save` archive (legacy or OCI layout): the files that are layers,
// which may be gzipped, are opened and every file in them read; everything else is read whole.
func (s *secretScan) imageArchive(t *testing.T, where string, r io.Reader) {
	t.Helper()
	var manifest []struct{ Layers []string }
	walked := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, where)
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		raw, err := io.ReadAll(tr)
		require.NoError(t, err, where)
		if hdr.Name == "manifest.json" {
			require.NoError(t, json.Unmarshal(raw, &manifest), where)
		}
		if s.layer(where+": "+hdr.Name, raw) {
			walked[hdr.Name] = true
			continue
		}
		s.scan(where+": "+hdr.Name, raw)
	}
	require.NotEmpty(t, manifest, "%s: no manifest.json", where)
	for _, m := range manifest {
		for _, l := range m.Layers {
			assert.True(t, walked[l], "%s: layer %s was not read as a layer", where, l)
		}
	}
}

// layer reads raw as a file system layer (a tar, perhaps gzipped) and says whether it was one.
func (s *secretScan) layer(where string, raw []byte) bool {
	data := raw
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return false
		}
		if data, err = io.ReadAll(zr); err != nil {
			return false
		}
	}
	if len(data) < 512 || !bytes.HasPrefix(data[257:], []byte("ustar")) {
		return false
	}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			// A truncated or odd layer is still read whole rather than skipped.
			if !errors.Is(err, io.EOF) {
				s.scan(where+" (unreadable as tar)", data)
			}
			break
		}
		s.scan(where+": "+hdr.Name+" (header)", mustJSONBytes(map[string]any{"name": hdr.Name, "link": hdr.Linkname, "pax": hdr.PAXRecords}))
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			s.scan(where+" (unreadable as tar)", data)
			break
		}
		s.scan(where+": "+hdr.Name, content)
		s.counts["files in image layers"]++
	}
	s.counts["image layers"]++
	return true
}

// webhooks reads what the webhook received. The URL's token is in the path it was called at, by
// design; the S3 keys must be nowhere in the requests.
func (s *secretScan) webhooks(w *webhookRecorder) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, req := range w.requests {
		var b strings.Builder
		_ = req.header.Write(&b)
		s.scanOnly(fmt.Sprintf("webhook request %d", i+1), []byte(b.String()+"\n"+string(req.body)), "S3 access key", "S3 secret key", "stale S3 secret key")
		s.counts["webhook requests"]++
	}
}

func (s *secretScan) scanOnly(where string, data []byte, secrets ...string) {
	all := s.needles
	defer func() { s.needles = all }()
	s.needles = nil
	for _, n := range all {
		for _, name := range secrets {
			if n.secret == name {
				s.needles = append(s.needles, n)
			}
		}
	}
	s.scan(where, data)
}

type recordedRequest struct {
	path   string
	header http.Header
	body   []byte
}

// webhookRecorder stands in for the chat webhook and keeps every request it was sent.
type webhookRecorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recordedRequest
}

func newWebhookRecorder(t *testing.T) *webhookRecorder {
	w := &webhookRecorder{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.requests = append(w.requests, recordedRequest{path: r.URL.Path, header: r.Header.Clone(), body: body})
		w.mu.Unlock()
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhookRecorder) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.requests)
}

func (w *webhookRecorder) paths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, r := range w.requests {
		out = append(out, r.path)
	}
	return out
}

func writeTar(t *testing.T, w io.Writer, files map[string][]byte) {
	t.Helper()
	tw := tar.NewWriter(w)
	for name, data := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return raw
}

func mustJSONBytes(v any) []byte {
	raw, _ := json.Marshal(v)
	return raw
}
