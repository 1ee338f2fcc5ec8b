package deploystate_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modelship/modelship/internal/deploystate"
)

// FuzzDecodeState: whatever the bytes, deploy_state.json's decoder never panics; it refuses
// with ErrInvalidState, or what it accepts validates and survives being written and read again.
func FuzzDecodeState(f *testing.F) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	st := deploystate.New("production")
	for i, v := range []string{"1", "2"} {
		d := deploystate.Deployment{GitSHA: strings.Repeat(v, 40), Image: "r.io/digits@sha256:" + strings.Repeat(v, 64),
			ModelName: "digits", ModelVersion: v, DeployedAt: now.Add(time.Duration(i) * time.Minute), Target: "docker"}
		if err := st.RecordDeploy(d); err != nil {
			f.Fatal(err)
		}
	}
	prev, _ := st.Previous()
	if err := st.AdmitRollback(deploystate.Rollback{From: st.Current, To: prev, Reason: "gate failed"}, now.Add(time.Hour)); err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(st)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(good), string(good) + "}", `{"schema_version":1,"environment":"production"}`,
		`{"schema_version":2}`, `{}`, `[]`, `null`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := deploystate.Decode(raw, "production")
		if err != nil {
			if !errors.Is(err, deploystate.ErrInvalidState) {
				t.Fatalf("refusal is not ErrInvalidState: %v", err)
			}
			return
		}
		if err := got.Validate("production"); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
		out, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("marshal an accepted state: %v", err)
		}
		again, err := deploystate.Decode(out, "production")
		if err != nil {
			t.Fatalf("an accepted state does not read back: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); string(out2) != string(out) {
			t.Fatalf("round trip changed the state:\n%s\n%s", out, out2)
		}
	})
}
