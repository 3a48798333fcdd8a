package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

func lead(t *testing.T, st *store.Store, id int64) *models.Lead {
	t.Helper()
	l, err := st.GetLead(context.Background(), id)
	require.NoError(t, err)
	return l
}

// TestStaffEditsSurviveEveryStage edits a lead after each stage of a
// call in turn (start, end, update), each followed by the later stages
// down to a late update that comes after the workflow closed, and checks
// that no later CTM data changes what the person set, while the fields
// they left alone keep following CTM.
func TestStaffEditsSurviveEveryStage(t *testing.T) {
	stages := []string{"start", "end", "update"}
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			for i, editAfter := range stages {
				t.Run("edit after "+editAfter, func(t *testing.T) {
					s := ctm.Sample{AccountID: 7, CallID: int64(2000 + i),
						Phone: "+1239555020" + string(rune('0'+i)), Start: t0}
					// Every stage says something new about the caller, so
					// CTM would change each field if it were allowed to.
					seq := []store.CallDelivery{
						delivery(t, models.KindCallStart, testenv.WithFields(t, s.StartBody(),
							map[string]any{"name": "Jordan Avery", "city": "Fort Myers", "email": nil}), t0),
						delivery(t, models.KindCallEnd, testenv.WithFields(t, s.EndBody(),
							map[string]any{"name": "Jordan A. Avery", "city": "Naples",
								"email": "j@example.org"}), t0.Add(5*time.Minute)),
						delivery(t, models.KindCallUpdate, testenv.WithFields(t, s.UpdateBody(),
							map[string]any{"name": "J. Avery", "city": "Tampa", "email": "ja@example.org"}),
							t0.Add(9*time.Minute)),
						delivery(t, models.KindCallUpdate, testenv.WithFields(t, s.UpdateBody(),
							map[string]any{"name": "Jordan Avery-Smith", "city": "Miami",
								"email": "jas@example.org", "source": "Bing"}), t0.Add(3*time.Hour)),
					}

					var leadID int64
					for j, d := range seq {
						leadID = apply(t, st, d).LeadID
						if j != i {
							continue
						}
						_, err := st.EditLead(ctx, leadID, store.LeadEdit{
							"name": "Jordan Avery (prefers JJ)", "source": "Referral: Dr. Lee", "email": "",
						})
						require.NoError(t, err)
					}

					l := lead(t, st, leadID)
					assert.Equal(t, "Jordan Avery (prefers JJ)", l.Name)
					assert.Equal(t, "Referral: Dr. Lee", l.Source)
					assert.Empty(t, l.Email, "a field staff cleared stays clear")
					assert.Equal(t, "Miami", l.City, "a field staff left alone follows the newest CTM data")
					assert.Equal(t, "cpc", l.Medium)
					for _, f := range []string{"name", "source", "email"} {
						assert.Equal(t, models.OriginStaff, l.Provenance[f].By, f)
					}
					assert.Equal(t, models.OriginCTM, l.Provenance["city"].By)
					assert.Equal(t, seq[3].Version, l.Provenance["city"].Version)
					assert.Equal(t, 1, count(eventTypes(l), models.EventLeadStaffUpdated))
				})
			}
		})
	}
}

func TestCTMDataOrdering(t *testing.T) {
	ctx := context.Background()
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)

			t.Run("newer data of the same call updates what CTM set", func(t *testing.T) {
				s := ctm.Sample{AccountID: 7, CallID: 3001, Phone: "+12395550301", Start: t0}
				rec := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))
				end := delivery(t, models.KindCallEnd, testenv.WithFields(t, s.EndBody(),
					map[string]any{"name": "Jordan A. Avery"}), t0.Add(time.Minute))
				apply(t, st, end)

				l := lead(t, st, rec.LeadID)
				assert.Equal(t, "Jordan A. Avery", l.Name)
				assert.Equal(t, models.FieldOrigin{By: models.OriginCTM},
					models.FieldOrigin{By: l.Provenance["name"].By})
				assert.Equal(t, end.Version, l.Provenance["name"].Version)
				assert.Equal(t, int64(3001), l.Provenance["name"].CTMCallID)
			})
			t.Run("an older delivery arriving late never overwrites", func(t *testing.T) {
				s := ctm.Sample{AccountID: 7, CallID: 3002, Phone: "+12395550302", Start: t0}
				rec := apply(t, st, delivery(t, models.KindCallEnd, testenv.WithFields(t, s.EndBody(),
					map[string]any{"city": "Naples"}), t0.Add(time.Minute)))
				// A start retried an hour later still ranks below the end.
				apply(t, st, delivery(t, models.KindCallStart, testenv.WithFields(t, s.StartBody(),
					map[string]any{"city": "Cape Coral"}), t0.Add(time.Hour)))
				apply(t, st, delivery(t, models.KindCallUpdate, testenv.WithFields(t, s.UpdateBody(),
					map[string]any{"city": "Tampa"}), t0.Add(-time.Minute)))

				assert.Equal(t, "Naples", lead(t, st, rec.LeadID).City)
			})
			t.Run("the later call's data wins over a late delivery of an earlier call", func(t *testing.T) {
				first := ctm.Sample{AccountID: 7, CallID: 3003, Phone: "+12395550303", Start: t0}
				second := ctm.Sample{AccountID: 7, CallID: 3004, Phone: "+12395550303", Start: t0.Add(24 * time.Hour)}
				rec := apply(t, st, delivery(t, models.KindCallStart, first.StartBody(), t0))
				apply(t, st, delivery(t, models.KindCallStart, testenv.WithFields(t, second.StartBody(),
					map[string]any{"name": "Jordan Avery-Smith"}), t0.Add(24*time.Hour)))
				apply(t, st, delivery(t, models.KindCallEnd, testenv.WithFields(t, first.EndBody(),
					map[string]any{"name": "J. Avery"}), t0.Add(25*time.Hour)))

				assert.Equal(t, "Jordan Avery-Smith", lead(t, st, rec.LeadID).Name)
			})
			t.Run("create-only fields keep the first touch and fill while empty", func(t *testing.T) {
				first := ctm.Sample{AccountID: 7, CallID: 3005, Phone: "+12395550305", Start: t0}
				second := ctm.Sample{AccountID: 7, CallID: 3006, Phone: "+12395550305", Start: t0.Add(time.Hour)}
				rec := apply(t, st, delivery(t, models.KindCallStart, testenv.WithFields(t, first.StartBody(),
					map[string]any{"campaign": nil}), t0))
				apply(t, st, delivery(t, models.KindCallStart, testenv.WithFields(t, second.StartBody(),
					map[string]any{"source": "Facebook", "medium": "social", "campaign": "retarget"}),
					t0.Add(time.Hour)))

				l := lead(t, st, rec.LeadID)
				assert.Equal(t, "Google Ads", l.Source)
				assert.Equal(t, "cpc", l.Medium)
				assert.Equal(t, "retarget", l.Campaign, "an empty create-only field is filled")
			})
		})
	}

	t.Run("no create-only fields configured", func(t *testing.T) {
		st, err := store.Open(ctx, testenv.SQLiteURL(t), store.Options{CreateOnlyFields: []string{}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		require.NoError(t, st.Migrate(ctx))

		first := ctm.Sample{AccountID: 7, CallID: 3007, Phone: "+12395550307", Start: t0}
		second := ctm.Sample{AccountID: 7, CallID: 3008, Phone: "+12395550307", Start: t0.Add(time.Hour)}
		rec := apply(t, st, delivery(t, models.KindCallStart, first.StartBody(), t0))
		apply(t, st, delivery(t, models.KindCallStart, testenv.WithFields(t, second.StartBody(),
			map[string]any{"source": "Facebook"}), t0.Add(time.Hour)))

		assert.Equal(t, "Facebook", lead(t, st, rec.LeadID).Source)
	})
	t.Run("an unknown create-only field is refused", func(t *testing.T) {
		_, err := store.Open(ctx, testenv.SQLiteURL(t), store.Options{CreateOnlyFields: []string{"phone"}})
		assert.ErrorContains(t, err, `"phone" is not a lead field`)
	})
}

func TestEditLead(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			a := apply(t, st, delivery(t, models.KindCallStart,
				ctm.Sample{AccountID: 7, CallID: 1, Phone: "+12395550311", Start: t0}.StartBody(), t0))
			b := apply(t, st, delivery(t, models.KindCallStart,
				ctm.Sample{AccountID: 7, CallID: 2, Phone: "+12395550312", Start: t0}.StartBody(), t0))

			t.Run("records the staff and an event naming the fields", func(t *testing.T) {
				l, err := st.EditLead(ctx, a.LeadID, store.LeadEdit{"city": "Naples", "postal_code": "34102"})
				require.NoError(t, err)
				assert.Equal(t, "Naples", l.City)
				assert.Equal(t, models.OriginStaff, l.Provenance["postal_code"].By)
				assert.False(t, l.Provenance["postal_code"].At.IsZero())
				ev := l.Events[len(l.Events)-1]
				assert.Equal(t, models.EventLeadStaffUpdated, ev.Type)
				assert.Equal(t, []any{"city", "postal_code"}, ev.Data["fields"])
				assert.NotContains(t, ev.Data, "Naples", "the event names fields, never values")
			})
			t.Run("a phone number another lead has is a conflict", func(t *testing.T) {
				_, err := st.EditLead(ctx, a.LeadID, store.LeadEdit{"phone": "+12395550312"})
				assert.ErrorIs(t, err, store.ErrConflict)
			})
			t.Run("a new phone number moves the lead's key", func(t *testing.T) {
				l, err := st.EditLead(ctx, b.LeadID, store.LeadEdit{"phone": "+12395550313"})
				require.NoError(t, err)
				require.NotNil(t, l.Phone)
				assert.Equal(t, "+12395550313", *l.Phone)
				leads, err := st.ListLeads(ctx, store.LeadFilter{Phone: "+12395550313"})
				require.NoError(t, err)
				require.Len(t, leads, 1)
				assert.Equal(t, b.LeadID, leads[0].ID)
			})
			t.Run("an unknown lead", func(t *testing.T) {
				_, err := st.EditLead(ctx, 999_999, store.LeadEdit{"name": "x"})
				assert.ErrorIs(t, err, store.ErrNotFound)
			})
		})
	}
}
