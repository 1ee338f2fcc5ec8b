package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/evidence"
)

// stageRun is a deploy or rollback's evidence: started before the work, printed as a banner,
// finished and written afterwards, locally and beside the deploy state.
type stageRun struct {
	rec   *evidence.Record
	store *store.Store
	key   string
}

func startStage(cmd *cobra.Command, g *globals, tf *targetFlags, stage string, states *store.Store) *stageRun {
	rec := evidence.New(stage, version, os.Args)
	rec.Config["target"] = tf.target
	rec.Config["environment"] = tf.env
	rec.Config["storage"] = g.s3.String() + " (AWS_ENDPOINT_URL_S3 or --s3-endpoint)"
	rec.Config["state_bucket"] = g.stateBucket
	rec.Config["config_source"] = "flags and environment (MODELSHIP_*, AWS_*)"
	if tf.target == "docker" {
		rec.Config["publish"] = tf.publish
	} else {
		rec.Config["namespace"] = tf.kube.namespace
	}
	return &stageRun{rec: rec, store: states, key: states.EvidenceKey(tf.env, stage, rec.StartedAt)}
}

// announce prints what the stage runs with, before it starts.
func (s *stageRun) announce(cmd *cobra.Command) { fmt.Fprintln(cmd.ErrOrStderr(), s.rec.Banner()) }

// pointer is where the evidence will be kept, recorded in deploy_state.json.
func (s *stageRun) pointer() string { return s.store.URI(s.key) }

// finish records the outcome and writes evidence.json to the evidence folder and the state
// bucket. Failing to write evidence is reported, never turned into a failed deploy.
func (s *stageRun) finish(ctx context.Context, cmd *cobra.Command, out *deploy.Outcome, err error) {
	if out != nil && out.Result != nil {
		for _, st := range out.Result.Steps {
			s.rec.Time(st.Name, st.Duration)
		}
		s.rec.Outputs["target_instance"] = out.Result.Instance
		s.rec.Outputs["url"] = out.Result.URL
		s.rec.Outputs["reused"] = out.Result.Reused
		if out.Rollout != nil {
			s.rec.Outputs["rollout"] = out.Rollout
		}
		if out.Deployment.Image != "" {
			s.rec.Outputs["image"] = out.Deployment.Image
			s.rec.Outputs["deployed"] = out.Deployment
		}
	}
	s.rec.Finish(err)
	secrets := evidence.SecretsFromEnv()
	raw, merr := s.rec.Marshal(secrets)
	if merr != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "evidence not written: %v\n", merr)
		return
	}
	dir := envOr("MODELSHIP_EVIDENCE_DIR", ".")
	local := filepath.Join(dir, evidence.FileName)
	if werr := s.rec.Write(local, secrets); werr != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "evidence not written to %s: %v\n", local, werr)
	}
	if perr := s.store.PutEvidence(context.WithoutCancel(ctx), s.key, raw); perr != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "evidence not kept in the state bucket: %v\n", perr)
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "evidence: %s and %s\n", local, s.pointer())
}
