package signing

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// ProvenanceType is SLSA v1 provenance's predicate type (`cosign verify-attestation --type slsaprovenance1`).
	ProvenanceType = "https://slsa.dev/provenance/v1"
	// SBOMType is a CycloneDX SBOM's predicate type (`--type cyclonedx`).
	SBOMType = "https://cyclonedx.org/bom"
	// BuildType names how build-image builds, in the provenance.
	BuildType = "https://github.com/modelship/modelship/build-image/v1"
	// BuilderID names the builder: the modelship Dagger module.
	BuilderID = "https://github.com/modelship/modelship/ci"
)

// Build is what build-image built an image from: what its provenance records.
type Build struct {
	GitSHA       string
	Source       string // the repository, e.g. https://github.com/acme/models (optional)
	ModelName    string
	ModelVersion string
	ModelSHA256  string
	Dockerfile   string // path in the repository, e.g. serving/Dockerfile
	// DockerfileSHA256 is the digest of the Dockerfile's bytes.
	DockerfileSHA256 string
	// BaseImages are the images built on, by role (e.g. go, runtime), each a reference with
	// its digest (name@sha256:...).
	BaseImages     map[string]string
	Platforms      []string
	BuilderVersion string // the modelship module's version or commit (optional)
	InvocationID   string // the CI run (optional)
	StartedOn      time.Time
	FinishedOn     time.Time
}

// Validate names what a provenance cannot do without.
func (b Build) Validate() error {
	var missing []string
	for name, v := range map[string]string{"git SHA": b.GitSHA, "model name": b.ModelName, "model version": b.ModelVersion,
		"model sha256": b.ModelSHA256, "Dockerfile": b.Dockerfile, "Dockerfile sha256": b.DockerfileSHA256} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	for role, ref := range b.BaseImages {
		if _, digest, ok := strings.Cut(ref, "@sha256:"); !ok || len(digest) != 64 {
			return fmt.Errorf("base image %s %q has no sha256 digest (want name@sha256:<64 hex>)", role, ref)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("provenance needs the %s", strings.Join(missing, ", "))
	}
	return nil
}

// ProvenanceStatement is the in-toto v1 statement of SLSA v1 provenance for the image with
// digest (sha256:...) in repository.
func ProvenanceStatement(repository, digest string, b Build) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	params, err := structpb.NewStruct(map[string]any{
		"git_sha":    b.GitSHA,
		"source":     b.Source,
		"dockerfile": b.Dockerfile,
		"platforms":  anySlice(b.Platforms),
		"model": map[string]any{
			"name": b.ModelName, "version": b.ModelVersion, "sha256": b.ModelSHA256,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("provenance parameters: %w", err)
	}
	deps := []*intoto.ResourceDescriptor{
		{Name: "source", Uri: gitURI(b.Source, b.GitSHA), Digest: map[string]string{"gitCommit": b.GitSHA}},
		{Name: "model", Uri: "modelship://" + b.ModelName + "@" + b.ModelVersion, Digest: map[string]string{"sha256": b.ModelSHA256}},
		{Name: "dockerfile", Uri: b.Dockerfile, Digest: map[string]string{"sha256": b.DockerfileSHA256}},
	}
	for _, role := range slices.Sorted(maps.Keys(b.BaseImages)) {
		ref := b.BaseImages[role]
		name, digest, _ := strings.Cut(ref, "@sha256:")
		deps = append(deps, &intoto.ResourceDescriptor{Name: "base-image:" + role, Uri: "docker://" + name, Digest: map[string]string{"sha256": digest}})
	}
	meta := &slsa.BuildMetadata{InvocationId: b.InvocationID}
	if !b.StartedOn.IsZero() {
		meta.StartedOn = timestamppb.New(b.StartedOn)
	}
	if !b.FinishedOn.IsZero() {
		meta.FinishedOn = timestamppb.New(b.FinishedOn)
	}
	builder := &slsa.Builder{Id: BuilderID}
	if b.BuilderVersion != "" {
		builder.Version = map[string]string{"modelship": b.BuilderVersion}
	}
	prov := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{BuildType: BuildType, ExternalParameters: params, ResolvedDependencies: deps},
		RunDetails:      &slsa.RunDetails{Builder: builder, Metadata: meta},
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	predicate, err := toStruct(prov)
	if err != nil {
		return nil, err
	}
	return statement(repository, digest, ProvenanceType, predicate)
}

// SBOMStatement is the in-toto v1 statement carrying a CycloneDX SBOM (JSON) of the image.
func SBOMStatement(repository, digest string, sbom []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(sbom, &doc); err != nil {
		return nil, fmt.Errorf("the SBOM is not JSON: %w", err)
	}
	if doc["bomFormat"] != "CycloneDX" {
		return nil, fmt.Errorf("the SBOM is not CycloneDX JSON (bomFormat %v)", doc["bomFormat"])
	}
	predicate, err := structpb.NewStruct(doc)
	if err != nil {
		return nil, fmt.Errorf("SBOM predicate: %w", err)
	}
	return statement(repository, digest, SBOMType, predicate)
}

func statement(repository, digest, predicateType string, predicate *structpb.Struct) ([]byte, error) {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return nil, fmt.Errorf("image digest %q is not sha256:<hex>", digest)
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Name: repository, Digest: map[string]string{"sha256": hex}}},
		PredicateType: predicateType,
		Predicate:     predicate,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode in-toto statement: %w", err)
	}
	return b, nil
}

// Provenance is what deploy reads back from a verified provenance.
type Provenance struct {
	BuilderID    string
	GitSHA       string
	ModelName    string
	ModelVersion string
	ModelSHA256  string
}

// parseProvenance reads the commit and model an in-toto statement of SLSA v1 provenance names.
func parseProvenance(statementJSON []byte) (*Provenance, error) {
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(statementJSON, &st); err != nil {
		return nil, fmt.Errorf("read the in-toto statement: %w", err)
	}
	raw, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fmt.Errorf("read the provenance predicate: %w", err)
	}
	var prov slsa.Provenance
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &prov); err != nil {
		return nil, fmt.Errorf("read the SLSA provenance: %w", err)
	}
	params := prov.GetBuildDefinition().GetExternalParameters().AsMap()
	model, _ := params["model"].(map[string]any)
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	return &Provenance{BuilderID: prov.GetRunDetails().GetBuilder().GetId(), GitSHA: str(params, "git_sha"),
		ModelName: str(model, "name"), ModelVersion: str(model, "version"), ModelSHA256: str(model, "sha256")}, nil
}

func toStruct(m proto.Message) (*structpb.Struct, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode provenance: %w", err)
	}
	var s structpb.Struct
	if err := protojson.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("encode provenance: %w", err)
	}
	return &s, nil
}

func gitURI(source, sha string) string {
	if source == "" {
		return "git+commit:" + sha
	}
	return "git+" + source + "@" + sha
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
