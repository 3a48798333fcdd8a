//go:build nodev

package cli

import "github.com/spf13/cobra"

// devCommands adds nothing in a production build (-tags nodev): `dev` and
// `bench` embed the Temporal server, which that build leaves out.
func devCommands() []*cobra.Command { return nil }
