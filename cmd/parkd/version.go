package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set for a release by the build:
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/parkd
//
// Unset, they come from what Go records in the binary: the module version
// (`go install ...@v1.4.0`) and the VCS revision of a build from a checkout.
var version, commit string

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "the version, the commit and the Go version parkd was built from",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText())
			return err
		},
	}
}

func versionText() string {
	v, c, at, modified := version, commit, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.time":
				at = " (" + s.Value + ")"
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown (built without VCS information)"
	} else if modified {
		c += at + ", with uncommitted changes"
	} else {
		c += at
	}
	return fmt.Sprintf("parkd %s\ncommit %s\ngo %s %s/%s\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
