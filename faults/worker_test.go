package faults

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// The worker is killed (SIGKILL) while two activities are half done: one
// call's recording step has written inside its transaction and waits, and
// another call's first step, a local activity, waits for its lead. Both
// calls complete on the restarted worker, and nothing is applied twice.
//
// The steps are held in place by the database itself: the test holds, in
// an open transaction, the key of the timeline event the recording step
// is about to insert and the lead the other step must lock.
func TestWorkerKilledMidActivity(t *testing.T) {
	temporal := teststack.Temporal(t)
	s := newSetup(t, testenv.PostgresURL(t), temporal.HostPort())
	s.webhook(nil)
	w := s.worker()
	l := newLoad(s, 1)

	began := time.Now().Add(-time.Minute)
	a := ctm.Sample{AccountID: s.account, CallID: 6_000_001, Phone: phone(1), Start: began}
	b := ctm.Sample{AccountID: s.account, CallID: 6_000_002, Phone: phone(2), Start: began}
	for _, c := range []ctm.Sample{a, b} {
		post(t, l, send{callID: c.CallID, path: "call-start", body: c.StartBody()})
	}
	callA := waitCallRow(t, s, a)
	callB := waitCallRow(t, s, b)

	db, err := sql.Open("pgx", s.dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	hold, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	defer func() { _ = hold.Rollback() }()
	_, err = hold.Exec(`SELECT id FROM leads WHERE id = $1 FOR UPDATE`, callB.LeadID)
	require.NoError(t, err)
	// The event is held under call B's lead: the key is what blocks the
	// recording step, and a row under call A's lead would also block the
	// step before it, which locks that lead.
	_, err = hold.Exec(`INSERT INTO lead_events (lead_id, type, dedupe_key, occurred_at, data, created_at)
		VALUES ($1, $2, $3, now(), '{}', now())`,
		callB.LeadID, models.EventRecordingReady, fmt.Sprintf("%s:%d", models.EventRecordingReady, callA.ID))
	require.NoError(t, err)

	for _, c := range []ctm.Sample{a, b} {
		post(t, l, send{callID: c.CallID, path: "call-end", body: c.EndBody()})
	}
	waitFor(t, time.Minute, "both steps waiting inside the database", func() bool {
		var events, leads int
		err := db.QueryRow(`SELECT
			count(*) FILTER (WHERE query LIKE '%INSERT INTO "lead_events"%'),
			count(*) FILTER (WHERE query LIKE '%FROM "leads"%FOR UPDATE%')
			FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&events, &leads)
		require.NoError(t, err)
		return events > 0 && leads > 0
	})

	w.kill()
	require.NoError(t, hold.Rollback())
	w.start()
	w.waitLog("worker polling", time.Minute)

	checkCallsEnded(t, s, []ctm.Sample{a, b}, 3*time.Minute)
	runs := stepRuns(t, temporal.HostPort(), workflows.CallWorkflowID(a.AccountID, a.CallID))
	t.Logf("call A's steps: %+v", runs)
	rec := runs["AttachRecording"]
	// The step runs first as a local activity, which leaves no attempt in
	// history: that it ran again shows as its result being recorded only
	// after the killed worker's workflow task timed out. Had it fallen
	// back to a regular activity, the second attempt shows instead.
	assert.True(t, rec.afterTaskTimeout || rec.attempts >= 2,
		"the recording step ran again after the kill: %+v", rec)
}

func post(t *testing.T, l *load, snd send) {
	t.Helper()
	var r result
	l.post(context.Background(), snd, &r)
	require.True(t, r.acked(), "%s answered %d", snd.path, r.status)
}

func waitCallRow(t *testing.T, s *setup, c ctm.Sample) *models.Call {
	t.Helper()
	var call *models.Call
	waitFor(t, 30*time.Second, fmt.Sprintf("call %d recorded", c.CallID), func() bool {
		got, err := s.store.GetCall(context.Background(), c.AccountID, c.CallID)
		call = got
		return err == nil
	})
	return call
}

// stepRun is what a workflow's history tells of one activity type.
type stepRun struct {
	// attempts is the highest attempt started as a regular activity.
	attempts int32
	// afterTaskTimeout: a result of it, as a regular or local activity,
	// was recorded after a workflow task had timed out.
	afterTaskTimeout bool
}

// stepRuns reads a workflow's history for what became of each activity
// type, regular or local.
func stepRuns(t *testing.T, hostPort, wfID string) map[string]stepRun {
	t.Helper()
	c, err := engine.Dial(context.Background(), engine.Options{HostPort: hostPort})
	require.NoError(t, err)
	defer c.Close()

	types := map[int64]string{}
	out := map[string]stepRun{}
	timedOut := false
	note := func(name string, attempt int32) {
		r := out[name]
		r.attempts = max(r.attempts, attempt)
		r.afterTaskTimeout = r.afterTaskTimeout || timedOut
		out[name] = r
	}
	iter := c.GetWorkflowHistory(context.Background(), wfID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		switch {
		case ev.GetWorkflowTaskTimedOutEventAttributes() != nil:
			timedOut = true
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			types[ev.EventId] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			a := ev.GetActivityTaskStartedEventAttributes()
			note(types[a.GetScheduledEventId()], a.GetAttempt())
		case ev.GetMarkerRecordedEventAttributes().GetMarkerName() == localActivityMarker:
			var data struct{ ActivityType string }
			payloads := ev.GetMarkerRecordedEventAttributes().GetDetails()["data"]
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(payloads, &data))
			note(data.ActivityType, 0)
		}
	}
	return out
}

// localActivityMarker names the marker the SDK records for a local
// activity's result; its "data" detail names the activity type.
const localActivityMarker = "LocalActivity"
