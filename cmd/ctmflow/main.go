// Command ctmflow turns CallTrackingMetrics webhooks into CRM leads. See
// `ctmflow --help`; the commands live in package cli.
package main

import (
	"os"

	"github.com/ctmflow/ctmflow/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
