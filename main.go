// Command dronedelivery is the drone delivery backend: an Azure Functions
// custom handler that also runs standalone. See README.md.
package main

import (
	"embed"
	"os"

	"github.com/fabrikam/dronedelivery/shared/cli"
)

// app is the function app's configuration, built into the binary so the
// standalone runtime needs no files beside it.
//
//go:embed host.json functions/*/function.json
var app embed.FS

func main() {
	os.Exit(cli.Main(os.Args[1:], app, os.Stdout, os.Stderr))
}
