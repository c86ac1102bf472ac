package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/stepexec/stepexec"
)

func pruneCommand(g *globalFlags) *cobra.Command {
	var all bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove build cache and layers no image uses",
		Long: "Remove the build cache entries whose layers no image uses, then every layer\n" +
			"stepexec made that no image, container, running build or remaining cache\n" +
			"entry uses (a build killed before it could clean up leaves such layers).\n\n" +
			"With --all, remove every cache entry, and the images stepexec built that\n" +
			"have no name left (listed as <none>), with the layers only they use.\n" +
			"With --filter until=DURATION (e.g. 24h), spare the cache entries used\n" +
			"within that long.\n\n" +
			"Layers and images other tools (podman, buildah) made are never removed,\n" +
			"nor anything a running build stands on.",
		Args: exactArgs(0, "prune takes no arguments, only --all and --filter"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := stepexec.PruneOptions{All: all}
			for _, f := range filters {
				if err := parsePruneFilter(f, &opts); err != nil {
					return usageError{err}
				}
			}
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			freed, err := b.Prune(opts)
			for _, id := range freed.Images {
				fmt.Println("Deleted image: sha256:" + id)
			}
			for _, k := range freed.CacheEntries {
				fmt.Println("Deleted cache entry: " + k)
			}
			for _, l := range freed.Layers {
				fmt.Printf("Deleted layer: %s (%s)\n", l.ID, units.HumanSizeWithPrecision(float64(l.Size), 3))
			}
			fmt.Println("Total reclaimed space: " + units.HumanSizeWithPrecision(float64(freed.Bytes()), 3))
			return err
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every cache entry and the nameless images stepexec built")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "until=DURATION: only what was not used within DURATION (e.g. 24h)")
	return cmd
}

// parsePruneFilter reads one --filter, as `docker builder prune` has it.
func parsePruneFilter(f string, opts *stepexec.PruneOptions) error {
	k, v, ok := strings.Cut(f, "=")
	if !ok || k != "until" {
		return fmt.Errorf("--filter %q: the only filter is until=DURATION (e.g. until=24h)", f)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("--filter %q: %q is not a positive duration such as 24h or 90m", f, v)
	}
	opts.Until = d
	return nil
}

func historyCommand(g *globalFlags) *cobra.Command {
	var noTrunc bool
	cmd := &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show an image's steps, newest first, with their layers' sizes",
		Args:  exactArgs(1, "history needs one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			steps, err := b.History(args[0])
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "CREATED\tCREATED BY\tSIZE\tCOMMENT")
			for _, s := range steps {
				created := "<missing>"
				if s.Created != nil {
					created = units.HumanDuration(time.Since(*s.Created)) + " ago"
				}
				size := units.HumanSizeWithPrecision(float64(s.Size), 3)
				if s.Empty {
					size = "0B"
				}
				by := strings.ReplaceAll(s.CreatedBy, "\n", " ")
				if r := []rune(by); !noTrunc && len(r) > 45 {
					by = string(r[:44]) + "…"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", created, by, size, s.Comment)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten the instructions")
	return cmd
}

func systemCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Store-wide commands"}
	cmd.AddCommand(dfCommand(g, "df"))
	return cmd
}

func dfCommand(g *globalFlags, use string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: "Show the space images, build cache and cache mounts take",
		Args:  exactArgs(0, use+" takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			u, err := b.DiskUsage()
			if err != nil {
				return err
			}
			size := func(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "TYPE\tTOTAL\tACTIVE\tSIZE")
			fmt.Fprintf(w, "Images\t%d\t%d\t%s\n", u.Images, u.ImagesActive, size(u.ImagesSize))
			fmt.Fprintf(w, "Build cache\t%d\t\t%s\n", u.CacheEntries, size(u.CacheSize))
			fmt.Fprintf(w, "Cache mounts\t%d\t\t%s\n", u.CacheMounts, size(u.CacheMountsSize))
			return w.Flush()
		},
	}
}
