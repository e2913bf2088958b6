package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/methods"
)

func newMethodsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "methods [NAME]",
		Short: "List the acceleration methods and their parameters",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names := methods.Names()
			if len(args) == 1 {
				names = args
			}
			w := cmd.OutOrStdout()
			for _, n := range names {
				info, err := methods.Lookup(n)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s — %s\n", info.Name, info.Doc)
				for _, p := range info.Params {
					rng := ""
					switch p.Kind {
					case methods.Int, methods.Float:
						rng = fmt.Sprintf(" in [%g, %g]", p.Min, p.Max)
					case methods.Enum:
						rng = " one of " + strings.Join(p.Choices, "|")
					}
					fmt.Fprintf(w, "    --param %s=%s%s: %s\n", p.Name, p.Default, rng, p.Doc)
				}
			}
			return nil
		},
	}
}
