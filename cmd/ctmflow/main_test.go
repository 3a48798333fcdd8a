package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The production build (-tags nodev) must not link the embedded Temporal
// server: it doubles the binary and widens what an attacker can reach.
func TestProductionBuildLeavesOutTheServer(t *testing.T) {
	cases := map[string]struct {
		tags       string
		wantServer bool
	}{
		"production build": {tags: "nodev", wantServer: false},
		"dev build":        {tags: "", wantServer: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-tags", tc.tags, ".").CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			got := strings.Contains(string(out), "go.temporal.io/server/")
			if got != tc.wantServer {
				t.Errorf("links go.temporal.io/server: got %v, want %v", got, tc.wantServer)
			}
		})
	}
}
