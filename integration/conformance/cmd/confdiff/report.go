package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stepexec/stepexec/integration/conformance"
)

// outcome is one builder's result on one case, compared with the golden.
type outcome struct {
	builder, caseName string
	missing           bool // no result: the builder did not run this case
	listed, unlisted  []conformance.Difference
}

// reportCmd prints the report and says whether it passes: stepexec and
// BuildKit have no unlisted difference and every case has a golden.
func reportCmd(args []string) (bool, error) {
	fset := flag.NewFlagSet("report", flag.ExitOnError)
	corpus := fset.String("corpus", "", "the corpus directory")
	results := fset.String("results", "", "the results confdiff run wrote")
	knownPath := fset.String("known", "", "KNOWN-DIFFERENCES.md")
	update := fset.Bool("update", false, "rewrite each case's expected.json from BuildKit's result first")
	fset.Parse(args)
	if *corpus == "" || *results == "" || *knownPath == "" {
		return false, fmt.Errorf("report: -corpus, -results and -known are required")
	}
	cases, err := conformance.Load(*corpus, fset.Args()...)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(*knownPath)
	if err != nil {
		return false, err
	}
	known, err := conformance.ParseKnown(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", *knownPath, err)
	}
	builders, err := resultBuilders(*results)
	if err != nil {
		return false, err
	}
	ok := true
	used := map[*conformance.Known]bool{}
	var outcomes []outcome
	for _, c := range cases {
		if *update {
			if err := updateGolden(c, *results); err != nil {
				fmt.Printf("cannot update %s: %v\n", c.Name, err)
				ok = false
			}
		}
		want, err := c.Expected()
		if err != nil {
			fmt.Printf("%s: no golden: %v\n", c.Name, err)
			ok = false
			continue
		}
		for _, b := range builders {
			outcomes = append(outcomes, judge(b, c, want, *results, known, used))
		}
	}
	if *update {
		fmt.Println("(-update: the goldens were first rewritten from this run's BuildKit results)")
	}
	return printReport(cases, builders, outcomes, known, used, fset.NArg() == 0) && ok, nil
}

// resultBuilders lists the builders with results, BuildKit first.
func resultBuilders(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	order := map[string]int{"buildkit": 0, "stepexec": 1, "buildah": 2}
	var out []string
	for _, e := range entries {
		if _, ok := order[e.Name()]; ok && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	if len(out) == 0 {
		return nil, fmt.Errorf("no builder results in %s", dir)
	}
	return out, nil
}

func updateGolden(c *conformance.Case, results string) error {
	data, err := os.ReadFile(filepath.Join(results, "buildkit", c.Name+".json"))
	if err != nil {
		if e, err2 := os.ReadFile(filepath.Join(results, "buildkit", c.Name+".error")); err2 == nil {
			return fmt.Errorf("BuildKit failed: %s", buildError(string(e)))
		}
		return fmt.Errorf("no BuildKit result: %w", err)
	}
	return os.WriteFile(filepath.Join(c.Dir, conformance.ExpectedFile), data, 0o644)
}

// judge compares one builder's result with the golden; a failed build is
// the difference "build".
func judge(b string, c *conformance.Case, want *conformance.Result, results string, known []*conformance.Known, used map[*conformance.Known]bool) outcome {
	o := outcome{builder: b, caseName: c.Name}
	var diffs []conformance.Difference
	data, err := os.ReadFile(filepath.Join(results, b, c.Name+".json"))
	switch {
	case err == nil:
		got, err := conformance.Decode(data)
		if err != nil {
			diffs = []conformance.Difference{{What: "build", Detail: "unreadable result: " + err.Error()}}
		} else {
			diffs = conformance.Compare(want, got)
		}
	case errors.Is(err, fs.ErrNotExist):
		e, err := os.ReadFile(filepath.Join(results, b, c.Name+".error"))
		if err != nil {
			o.missing = true
			return o
		}
		diffs = []conformance.Difference{{What: "build", Detail: "failed: " + buildError(string(e))}}
	default:
		diffs = []conformance.Difference{{What: "build", Detail: err.Error()}}
	}
	o.listed, o.unlisted = conformance.Classify(known, b, c.Name, diffs, used)
	return o
}

// buildError picks the telling line of a failed build's error.
func buildError(e string) string {
	lines := strings.Split(strings.TrimSpace(e), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.Contains(l, "rror") || strings.Contains(l, "not supported") {
			return firstLine(lines[0]) + " — " + l
		}
	}
	return firstLine(e)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func printReport(cases []*conformance.Case, builders []string, outcomes []outcome, known []*conformance.Known, used map[*conformance.Known]bool, noteUnused bool) bool {
	fmt.Printf("\n%d cases\n", len(cases))
	ok := true
	for _, b := range builders {
		if !printSummary(b, outcomes) && b != "buildah" {
			ok = false
		}
	}
	printDifferences("\nDifferences not in KNOWN-DIFFERENCES.md:", outcomes, func(o outcome) []conformance.Difference { return o.unlisted })
	printDifferences("\nListed differences (KNOWN-DIFFERENCES.md):", outcomes, func(o outcome) []conformance.Difference { return o.listed })
	if noteUnused {
		ran := map[string]bool{}
		for _, b := range builders {
			ran[b] = true
		}
		for _, k := range known {
			if ran[k.Builder] && !used[k] {
				fmt.Printf("note: KNOWN-DIFFERENCES.md:%d (%s %s %s) matched nothing in this run\n", k.Line, k.Builder, k.Case, k.What)
			}
		}
	}
	if ok {
		fmt.Println("\nPASS: stepexec and BuildKit show no unlisted difference")
	} else {
		fmt.Println("\nFAIL: unlisted differences from BuildKit (fix them, or list them with the reason)")
	}
	return ok
}

// printSummary prints one builder's line and says whether it has no
// unlisted difference.
func printSummary(b string, outcomes []outcome) bool {
	var same, listedOnly, differ, missing int
	for _, o := range outcomes {
		if o.builder != b {
			continue
		}
		switch {
		case o.missing:
			missing++
		case len(o.unlisted) > 0:
			differ++
		case len(o.listed) > 0:
			listedOnly++
		default:
			same++
		}
	}
	what := "identical to BuildKit"
	if b == "buildkit" {
		what = "identical to the goldens (BuildKit's earlier run)"
	}
	fmt.Printf("%-9s %d %s, %d with listed differences only, %d with unlisted differences", b+":", same, what, listedOnly, differ)
	if missing > 0 {
		fmt.Printf(", %d not run", missing)
	}
	fmt.Println()
	return differ == 0
}

func printDifferences(title string, outcomes []outcome, pick func(outcome) []conformance.Difference) {
	printed := false
	for _, o := range outcomes {
		for _, d := range pick(o) {
			if !printed {
				fmt.Println(title)
				printed = true
			}
			fmt.Printf("  %-8s %-30s %s\n", o.builder, o.caseName, d)
		}
	}
}
