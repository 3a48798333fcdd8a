package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ctmflow/ctmflow/ctm"
)

func TestSummaryPercentiles(t *testing.T) {
	var d Dist
	for i := 100; i >= 1; i-- {
		d.Add(time.Duration(i) * time.Millisecond)
	}
	s := d.Summary()
	assert.Equal(t, 100, s.N)
	assert.Equal(t, 50*time.Millisecond, s.P50)
	assert.Equal(t, 90*time.Millisecond, s.P90)
	assert.Equal(t, 99*time.Millisecond, s.P99)
	assert.Equal(t, 100*time.Millisecond, s.Max)
	assert.Equal(t, Summary{}, (&Dist{}).Summary())
}

func TestPhonesAreValidAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for id := int64(1_000_000); id < 1_000_000+150_000; id += 37 {
		p := Phone(id)
		n, err := ctm.NormalizePhone(p, "US")
		if !assert.NoError(t, err, "call %d: %s", id, p) {
			return
		}
		assert.Equal(t, p, n)
		assert.False(t, seen[p], "call %d repeats %s", id, p)
		seen[p] = true
	}
}
