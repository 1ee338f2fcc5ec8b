package kubernetes_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
)

// BenchmarkKubernetes measures, against the test control plane (KWOK nodes), the API time of a
// blue-green deploy, of a rollback by selector switch, and of a rollback by image (the old
// colour was replaced); the README reports the medians.
func BenchmarkKubernetes(b *testing.B) {
	for _, mode := range []string{"deploy-switch", "rollback-switch", "rollback-image"} {
		b.Run(mode, func(b *testing.B) {
			var total, api []time.Duration
			for i := 0; i < b.N; i++ {
				out := benchKubeOnce(b, mode)
				total = append(total, out.Elapsed)
				api = append(api, out.Result.Steps.Total())
			}
			slices.Sort(total)
			slices.Sort(api)
			b.ReportMetric(float64(total[len(total)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(api[len(api)/2].Microseconds())/1000, "median-api-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchRuns numbers the namespaces: the testing package runs a benchmark more than once.
var benchRuns int

func benchKubeOnce(b *testing.B, mode string) *deploy.Outcome {
	b.StopTimer()
	defer b.StartTimer()
	benchRuns++
	e := newKubeEnvNamed(b, fmt.Sprintf("bench-%s-%d", mode, benchRuns), nil)
	ctx := context.Background()
	run := func(n int) *deploy.Outcome {
		out, err := deploy.Deploy(ctx, e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: kubeRelease(n)})
		require.NoError(b, err)
		return out
	}
	run(1)
	if mode == "deploy-switch" {
		return run(2)
	}
	run(2)
	if mode == "rollback-image" {
		run(3) // v1's colour now runs v3
		_, err := deploy.Rollback(ctx, e.deps, deploy.RollbackRequest{Environment: e.ns, To: deploy.ToPrevious, Reason: "bench"})
		require.NoError(b, err)
	}
	out, err := deploy.Rollback(ctx, e.deps, deploy.RollbackRequest{Environment: e.ns, To: deploy.ToPrevious, Reason: "bench"})
	require.NoError(b, err)
	return out
}
