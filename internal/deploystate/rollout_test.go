package deploystate_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploystate"
)

func rollout(outcome string, at time.Time) deploystate.Rollout {
	return deploystate.Rollout{Strategy: deploystate.StrategyCanary, Outcome: outcome, Stable: "r/m:1", StartedAt: at, EndedAt: at.Add(time.Minute),
		Candidate: deploystate.Deployment{GitSHA: strings.Repeat("b", 40), Image: "r/m:2", ModelName: "m", ModelVersion: "2", DeployedAt: at},
		Steps: []deploystate.RolloutStep{{Weight: 10, EffectiveWeight: 0.2, StartedAt: at, Seconds: 60, Passed: false,
			Checks: []deploystate.Check{{Name: "drift(js)", Value: 0.4, Limit: 0.1, Passed: false}}}}}
}

func TestRolloutsAreKeptNewestLastAndBounded(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	st := deploystate.New("production")
	_, ok := st.LastRollout()
	assert.False(t, ok)
	for i := range deploystate.MaxRollouts + 3 {
		require.NoError(t, st.RecordRollout(rollout(deploystate.OutcomeAborted, now.Add(time.Duration(i)*time.Minute))))
	}
	assert.Len(t, st.Rollouts, deploystate.MaxRollouts)
	last, ok := st.LastRollout()
	require.True(t, ok)
	assert.Equal(t, now.Add(time.Duration(deploystate.MaxRollouts+2)*time.Minute), last.StartedAt)

	st.UpdatedAt = now
	raw, err := json.Marshal(st)
	require.NoError(t, err)
	back, err := deploystate.Decode(raw, "production")
	require.NoError(t, err, "a state with rollouts reads back")
	assert.Equal(t, st.Rollouts, back.Rollouts)
}

func TestABadRolloutIsRefusedAndNamed(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for name, change := range map[string]func(*deploystate.Rollout){
		"strategy":  func(r *deploystate.Rollout) { r.Strategy = "linear" },
		"outcome":   func(r *deploystate.Rollout) { r.Outcome = "maybe" },
		"candidate": func(r *deploystate.Rollout) { r.Candidate.GitSHA = "abc" },
		"ended_at":  func(r *deploystate.Rollout) { r.EndedAt = r.StartedAt.Add(-time.Second) },
		"weight":    func(r *deploystate.Rollout) { r.Steps[0].Weight = 120 },
	} {
		t.Run(name, func(t *testing.T) {
			r := rollout(deploystate.OutcomePromoted, now)
			change(&r)
			st := deploystate.New("production")
			err := st.RecordRollout(r)
			require.ErrorIs(t, err, deploystate.ErrInvalidInput)
			assert.Contains(t, err.Error(), name)
			assert.Empty(t, st.Rollouts, "nothing half-recorded")
		})
	}
}
