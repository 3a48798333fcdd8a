package devserver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVisibilityFile(t *testing.T) {
	touch := func(t *testing.T, path string) {
		t.Helper()
		require.NoError(t, os.WriteFile(path, nil, 0o600))
	}
	cases := []struct {
		name     string
		existing []string
		want     string
	}{
		{"a new data directory splits", nil, "temporal-visibility.db"},
		{"a split data directory stays split", []string{"temporal.db", "temporal-visibility.db"},
			"temporal-visibility.db"},
		{"a data directory from before the split keeps one file", []string{"temporal.db"}, "temporal.db"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.existing {
				touch(t, filepath.Join(dir, f))
			}
			got := visibilityFile(filepath.Join(dir, "temporal.db"))
			assert.Equal(t, filepath.Join(dir, c.want), got)
		})
	}
}
