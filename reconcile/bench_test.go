package reconcile_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/reconcile"
	"github.com/ctmflow/ctmflow/testenv"
)

// BenchmarkReconcileUpToDate measures a run over 600 calls (4 pages of
// 150) that the CRM already has complete: the cost of checking, which is
// most of what a nightly reconcile does. One op is one whole run.
func BenchmarkReconcileUpToDate(b *testing.B) {
	for _, db := range []testenv.Database{
		{Name: "sqlite", URL: testenv.SQLiteURL(b)},
		{Name: "postgres", URL: testenv.PostgresURL(b)},
	} {
		b.Run(db.Name, func(b *testing.B) {
			st := testenv.Store(b, db.URL)
			a := &activities.Activities{Store: st}
			api := ctmtest.New(b)
			creds := api.AddAccount(account)
			client, err := ctm.NewClient(ctm.ClientOptions{BaseURL: api.URL(),
				Keys: map[int64]ctm.Credentials{account: creds}})
			require.NoError(b, err)
			const calls = 600
			for id := int64(1); id <= calls; id++ {
				s := ctm.Sample{AccountID: account, CallID: id, Phone: fmt.Sprintf("+1239555%04d", id),
					Start: day.Add(time.Duration(id) * time.Second)}
				record(b, a, models.KindCallEnd, s.EndBody())
				api.PutCall(s.EndBody())
			}
			opts := reconcile.Options{CTM: client, Store: st, AccountID: account, Since: day, Until: day.Add(time.Hour)}

			for b.Loop() {
				sum, err := reconcile.Run(context.Background(), opts)
				require.NoError(b, err)
				require.Equal(b, calls, sum.Checked)
				require.Zero(b, sum.Gaps())
			}
			b.ReportMetric(float64(calls)*float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
