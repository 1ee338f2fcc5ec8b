package deploystate_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploystate"
)

func TestAFailedRollbackIsLoggedButNotCounted(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	st := deploystate.New("production")
	v1 := deploystate.Deployment{GitSHA: strings.Repeat("a", 40), Image: "r/m@sha256:" + strings.Repeat("1", 64), ModelName: "m", ModelVersion: "1", DeployedAt: now}
	for i := 0; i < deploystate.RollbackBudget; i++ {
		at := now.Add(time.Duration(i) * time.Minute)
		require.NoError(t, st.AdmitRollback(deploystate.Rollback{To: v1, Reason: "gate failed"}, at))
		require.NoError(t, st.RollbackFailed(at, "smoke inference predicted class 3 for a sample labelled 0"))
	}
	assert.Equal(t, 0, st.RollbacksSince(now.Add(-time.Hour)))
	assert.Equal(t, deploystate.RollbackBudget, st.FailedRollbacksSince(now.Add(-time.Hour)))
	require.NoError(t, st.AdmitRollback(deploystate.Rollback{To: v1, Reason: "gate failed"}, now.Add(10*time.Minute)),
		"failed attempts leave the budget whole")
	assert.Equal(t, 1, st.RollbacksSince(now.Add(-time.Hour)))

	require.ErrorIs(t, st.RollbackFailed(now, " "), deploystate.ErrInvalidInput, "a failure says what failed")
	require.NoError(t, st.RollbackFailed(now.Add(-24*time.Hour), "pruned long ago"), "an attempt no longer logged is nothing to correct")
}
