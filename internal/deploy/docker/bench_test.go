package docker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/testenv"
)

// BenchmarkDocker measures, on the real engine, each operation from the call's start to the
// release answering ready and passing its smoke inference; the README reports the medians.
//   - deploy: v2 over a live v1 (candidate on a side port, then the swap)
//   - rollback: back to v1 over a live v2 (v1's image on the host: candidate, then the swap)
//   - rollback-none-live: back to v1 with no container left (image already on the host)
func BenchmarkDocker(b *testing.B) {
	for _, mode := range []string{"deploy", "rollback", "rollback-none-live"} {
		b.Run(mode, func(b *testing.B) {
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				times = append(times, benchOnce(b, mode))
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func benchOnce(b *testing.B, mode string) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	w := setup(b)
	e := newEnv(b, w)
	defer testenv.RemoveEnvironmentContainers(w.docker, e.name)
	ctx := context.Background()
	deployRel := func(rel string) *deploy.Outcome {
		out, err := deploy.Deploy(ctx, e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases[rel]})
		require.NoError(b, err)
		return out
	}
	deployRel("v1")
	if mode == "deploy" {
		return deployRel("v2").Elapsed
	}
	deployRel("v2")
	to := deploy.ToPrevious
	if mode == "rollback-none-live" {
		testenv.RemoveEnvironmentContainers(w.docker, e.name)
		to = deploy.ToCurrent
	}
	out, err := deploy.Rollback(ctx, e.deps, deploy.RollbackRequest{Environment: e.name, To: to, Reason: "benchmark", Smoke: w.releases["v1"].Smoke})
	require.NoError(b, err)
	return out.Elapsed
}
