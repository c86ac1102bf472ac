package integration

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"
)

// ATTACKS.md is the probe table with what each mode observed. TestAttacks
// regenerates it with -update and otherwise fails (in CI,
// STEPEXEC_REQUIRE_ALL=1) when a run observed something else;
// TestAttacksDocMatchesTable, which needs no privileges,
// fails when the table changed without the file being regenerated.

var update = flag.Bool("update", false, "rewrite ATTACKS.md from this run's results")

const (
	attacksDoc       = "ATTACKS.md"
	modeUnprivileged = "unprivileged user"
	modeRoot         = "real root"
	notRunYet        = "not run yet"
)

var docModes = []string{modeUnprivileged, modeRoot}

const docHeader = `# Attacks on the sandbox and the store

Every probe below runs on every ` + "`scripts/test.sh`" + ` as the unprivileged test user
and as real root (integration/attack_test.go; the table is in
integration/attack_probes_test.go, the in-RUN prober in integration/probe).
A probe passes when it is **blocked** (every attempt refused; the errno
says how) or **contained** (it ran, and the host saw nothing of it
afterwards); anything else fails the suite. After all probes of a mode,
nothing of the build may be left: processes, mounts, snapshots, temp dirs,
layers.

This file is generated: ` + "`go test ./integration -run TestAttacks -update`" + ` as root.
A CI run (STEPEXEC_REQUIRE_ALL=1) that observes something else fails until it
is regenerated; TestAttacksDocMatchesTable fails when the table changed.

`

// docCells are a row's cells before the observed ones.
func docCells(p probe) []string { return []string{p.ID, p.What, p.how(), p.Expected} }

func renderAttacksDoc(observed func(p probe, mode string) string) string {
	var b strings.Builder
	b.WriteString(docHeader)
	head := append([]string{"probe", "attack", "how", "expected"}, docModes...)
	writeDocRow(&b, head)
	writeDocRow(&b, strings.Split(strings.Repeat("---,", len(head)-1)+"---", ","))
	for _, p := range probes {
		cells := docCells(p)
		for _, m := range docModes {
			cells = append(cells, observed(p, m))
		}
		writeDocRow(&b, cells)
	}
	b.WriteString("\n" + renderDefects())
	return b.String()
}

func writeDocRow(b *strings.Builder, cells []string) {
	escaped := make([]string, len(cells))
	for i, c := range cells {
		escaped[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	fmt.Fprintf(b, "| %s |\n", strings.Join(escaped, " | "))
}

// parseAttacksDoc returns the table rows of text by probe ID.
func parseAttacksDoc(text string) (map[string][]string, []string) {
	rows := map[string][]string{}
	var order []string
	if i := strings.Index(text, defectsHeading); i >= 0 {
		text = text[:i] // the defects table is TestDefectsDocMatchesTable's
	}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| ") || !strings.HasSuffix(line, " |") {
			continue
		}
		inner := strings.ReplaceAll(line[2:len(line)-2], `\|`, "\x00")
		var cells []string
		for _, c := range strings.Split(inner, " | ") {
			cells = append(cells, strings.ReplaceAll(c, "\x00", "|"))
		}
		if cells[0] == "probe" || cells[0] == "---" {
			continue
		}
		rows[cells[0]] = cells
		order = append(order, cells[0])
	}
	return rows, order
}

func readAttacksDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(attacksDoc)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestAttacksDocMatchesTable: ATTACKS.md has the table's rows, in order,
// as they are now, each with an observed outcome for both modes.
func TestAttacksDocMatchesTable(t *testing.T) {
	rows, order := parseAttacksDoc(readAttacksDoc(t))
	var ids []string
	for _, p := range probes {
		ids = append(ids, p.ID)
		got, ok := rows[p.ID]
		if !ok {
			t.Errorf("%s has no row %s", attacksDoc, p.ID)
			continue
		}
		want := docCells(p)
		if len(got) != len(want)+len(docModes) || strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
			t.Errorf("%s row %s is\n  %q\nthe table says\n  %q", attacksDoc, p.ID, got, want)
			continue
		}
		for i, m := range docModes {
			if obs := got[len(want)+i]; obs == "" || obs == notRunYet {
				t.Errorf("%s row %s has no outcome as %s", attacksDoc, p.ID, m)
			}
		}
	}
	if strings.Join(order, ",") != strings.Join(ids, ",") {
		t.Errorf("%s lists the rows %v, the table %v", attacksDoc, order, ids)
	}
	if t.Failed() {
		t.Logf("regenerate it: go test ./integration -run TestAttacks -update (as root)")
	}
}

// syncAttacksDoc writes (-update) or checks ATTACKS.md against this run's
// outcomes; a mode this run did not observe keeps what the file says.
func syncAttacksDoc(t *testing.T, observed map[string]map[string]outcome) {
	old, _ := parseAttacksDoc(readAttacksDoc(t))
	want := renderAttacksDoc(func(p probe, mode string) string {
		if o, ok := observed[mode][p.ID]; ok {
			return o.String()
		}
		if cells := old[p.ID]; len(cells) == len(docCells(p))+len(docModes) {
			for i, m := range docModes {
				if m == mode {
					return cells[len(docCells(p))+i]
				}
			}
		}
		return notRunYet
	})
	if *update {
		if err := os.WriteFile(attacksDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got := readAttacksDoc(t)
	if got == want {
		return
	}
	// Another kernel may refuse with other errnos (a failed probe fails its
	// own row): only CI, on the machine the file is made on, insists.
	report := t.Logf
	if testenv.RequireAll() && testenv.OnRecordingKernel() {
		report = t.Errorf
	}
	report("%s differs from this run:\n%s\nregenerate it: go test ./integration -run TestAttacks -update (as root)", attacksDoc, lineDiff(got, want))
}

// lineDiff lists the lines of want that got lacks and the other way round.
func lineDiff(got, want string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var b strings.Builder
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
