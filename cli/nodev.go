//go:build nodev

package cli

import "github.com/spf13/cobra"

// newDevCmd has nothing to add in a production build (-tags nodev): the
// embedded Temporal server is left out of the binary.
func newDevCmd() *cobra.Command { return nil }
