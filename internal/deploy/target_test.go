package deploy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/serving/oip"
)

// A first probe that hangs (a proxy whose backend never answers) must not use up the whole
// ready budget: the next probe gets through.
func TestAHangingProbeIsRetriedWithinTheReadyBudget(t *testing.T) {
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probes.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 4*deploy.ProbeTimeout)
	defer cancel()
	require.NoError(t, deploy.WaitReady(ctx, oip.NewClient(srv.URL), nil))
	assert.Equal(t, int32(2), probes.Load())
}

// A server that never answers fails verification with the probe's own error, not with whatever
// alive() hit after the deadline.
func TestAServerThatNeverAnswersFailsVerificationNamingTheProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	alive := func(ctx context.Context) error { return ctx.Err() }
	err := deploy.WaitReady(ctx, oip.NewClient(srv.URL), alive)
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.Contains(t, err.Error(), "not ready before the deadline")
	assert.Contains(t, err.Error(), "status 503")
}
