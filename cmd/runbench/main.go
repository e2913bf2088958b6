// Command runbench is the cachebench command line: it samples diffusion models under acceleration
// methods, replays reference trajectories, and (in later subcommands) sweeps, measures and reports.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "runbench:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "runbench",
		Short:         "Benchmark training-free acceleration of diffusion models (feature and token caching)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("backend", "", `GoMLX backend ("go:ops_sequential" by default, "xla:cuda" in an -tags xla build); also $GOMLX_BACKEND`)
	var profile string
	root.PersistentFlags().StringVar(&profile, "cpuprofile", "", "write a Go CPU profile of the command to this file (go tool pprof)")
	var stop func()
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if profile == "" {
			return nil
		}
		f, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
		return nil
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if stop != nil {
			stop()
		}
	}
	root.AddCommand(newForwardCmd(), newSampleCmd(), newFlopsCmd(), newMethodsCmd(), newFIDCmd(), newStatsCmd(), newMetricsCmd(), newClipScoreCmd(), newTokenizeCmd(), newEncodeTextCmd(), newExportCmd(), newFeaturesCmd(), newInspectCmd(), newReportCmd(), newRunCmd(), newMergeCmd(), newDecodeCmd(), newCalibrateCmd())
	return root
}
