// Package microcli runs go-micro's command-line parsing for this
// repository's binaries and closes the gaps it leaves open.
//
// service.Init parses os.Args with micro/cli, applies go-micro's own flags
// (--registry, --broker, --server_name, ...) and then runs the app's
// Action. Three things are left to the caller. First, when micro/cli handles
// the command line by itself (a subcommand such as the built-in "help"),
// it returns without running the Action and go-micro's Init returns
// normally, so a naive main goes on to start the service. micro/cli v2.1.2
// happens to os.Exit(0) after printing help, but that is an accident of
// one version; checking that the Action ran does not depend on it. Second,
// go-micro silently ignores positional arguments, so a mistyped flag such
// as "-- topic x" would be dropped without a word. Third, --help shows
// each flag's value from the environment as its default, credentials
// included; Init has it show them redacted.
//
// ErrorLog gives the binaries a logger for their fatal errors.
package microcli

import (
	"fmt"
	"log"
	"os"

	"github.com/micro/cli/v2"
	"github.com/micro/go-micro/v2"
)

// Init parses the command line of service through service.Init, with
// credentials redacted from --help, and then calls apply, if it is not
// nil, with the parsed flags; flags declared
// with a Destination have been stored by then, so apply is the place to
// validate them and to set up what depends on them.
//
// Init reports whether the program should go on. False means the command
// line was fully handled already (help was printed, or a subcommand ran)
// and the program should exit with status 0.
//
// A stray positional argument or an error from apply ends the program the
// way malformed flags do: micro/cli prints the error to stderr and exits
// with status 1. Init is meant for main packages: inside `go test` it
// would parse the test binary's flags.
func Init(service micro.Service, apply func(*cli.Context) error) bool {
	redactHelp()
	proceed := false
	service.Init(micro.Action(func(c *cli.Context) error {
		if c.Args().Present() {
			return fmt.Errorf("unexpected argument %q: every setting is a flag (see --help)", c.Args().First())
		}
		if apply != nil {
			if err := apply(c); err != nil {
				return err
			}
		}
		proceed = true
		return nil
	}))
	return proceed
}

// ErrorLog returns a logger writing lines prefixed with "name: " to
// stderr, for a binary's fatal errors. The standard logger will not do:
// the etcd client's capnslog takes it over on import and adds its own
// timestamp and level to every line.
func ErrorLog(name string) *log.Logger {
	return log.New(os.Stderr, name+": ", 0)
}
