package integration

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The attack suite: every row of the probe table (attack_probes_test.go)
// runs as the unprivileged user and as real root. A row either runs
// stepexec-probe (integration/probe) in a RUN step, one RUN per row in one
// build, or acts on the host (an import, a build of its own); either way it
// ends in an outcome, which must be "blocked" or "contained". After the
// rows, nothing of the account's may be left: processes, mounts,
// snapshots, temp dirs, layers. ATTACKS.md holds the table with each
// mode's observed outcomes (attacks_doc_test.go keeps it in sync).

// outcome is what one probe came to.
type outcome struct {
	Verdict string // blocked, contained; anything else fails: ESCAPED, UNCLEAR, ran
	Detail  string
}

const (
	verdictBlocked   = "blocked"   // every attempt was refused
	verdictContained = "contained" // it ran, and the host saw nothing of it afterwards
	verdictEscaped   = "ESCAPED"   // an attempt got through
	verdictUnclear   = "UNCLEAR"   // the probe could not tell: a failure too
	verdictRan       = "ran"       // in-RUN part done, a host check must decide
)

func (o outcome) passed() bool {
	return o.Verdict == verdictBlocked || o.Verdict == verdictContained
}

func (o outcome) String() string { return o.Verdict + ": " + o.Detail }

// probe is one row of the attack table and of ATTACKS.md.
type probe struct {
	ID       string
	What     string // the attack, in a few words
	Expected string // the outcome it must have
	// Run is stepexec-probe's KIND and ARGS for a row that runs in a RUN
	// step. {secret}, {victim}, {victim-marker}, {tcp}, {abstract},
	// {canary} and {marker} stand for the host side's values (attackEnv).
	Run []string
	// Check looks at the host after the build, for a Run row; it returns
	// the row's final outcome given the in-RUN one (e.g. an escape the
	// step could not see, or "contained" for a probe that only ran).
	Check func(t *testing.T, e *attackEnv, in outcome) outcome
	// Host is a row's action on the host side, instead of Run; How says
	// what it does, for ATTACKS.md.
	Host func(t *testing.T, e *attackEnv) outcome
	How  string
}

// how is the ATTACKS.md text for how the row is run.
func (p probe) how() string {
	if p.Run != nil {
		return "RUN `stepexec-probe " + p.ID + " " + strings.Join(p.Run, " ") + "`"
	}
	return "host: " + p.How
}

// attackImage is the base image of the attack builds: Alpine and
// /usr/local/bin/stepexec-probe; attackBuild names the build of the RUN rows.
const (
	attackImage = "stepexec-attack-base"
	attackBuild = "stepexec-attacks"
)

// modeName is the ATTACKS.md column of an account.
func modeName(a *account) string {
	if a.rootless() {
		return modeUnprivileged
	}
	return modeRoot
}

func TestAttacks(t *testing.T) {
	accs := accounts(t)
	probeBin := buildProbe(t)
	base := filepath.Join(binDir, "stepexec-attack-base.tar")
	if err := writeAttackBase(base, probeBin); err != nil {
		t.Fatal(err)
	}
	observed := map[string]map[string]outcome{}
	for _, a := range accs {
		t.Run(a.name, func(t *testing.T) {
			observed[modeName(a)] = runAttacks(t, a, base, probeBin)
		})
	}
	t.Run("ATTACKS.md", func(t *testing.T) { syncAttacksDoc(t, observed) })
}

// runAttacks runs every row as a, fails the test for each that did not pass
// and returns all outcomes by row ID.
func runAttacks(t *testing.T, a *account, base, probeBin string) map[string]outcome {
	a.mustRun(t, "import", base, attackImage)
	before := a.storeLayers(t)
	e := newAttackEnv(t, a, probeBin)
	got := runInSteps(t, e, attackImage, attackBuild, probes)
	for _, p := range probes {
		if p.Host != nil {
			got[p.ID] = p.Host(t, e)
		}
	}
	for _, p := range probes {
		if o := got[p.ID]; !o.passed() {
			t.Errorf("%s (%s) as %s: %s; want %s", p.ID, p.What, a.name, o, p.Expected)
		}
	}
	e.stopVictim()
	a.run(t, "rmi", attackBuild) // absent if the build failed
	a.assertNothingLeft(t, before)
	return got
}

// runInSteps builds FROM base, tagged tag, a RUN per row that has Run, in
// table order, and returns those rows' outcomes after their checks. (A
// Host row may use it with a base image of its own; it must rmi tag.)
func runInSteps(t *testing.T, e *attackEnv, base, tag string, rows []probe) map[string]outcome {
	t.Helper()
	var df strings.Builder
	fmt.Fprintf(&df, "FROM %s\n", base)
	stepOf := map[string]int{}
	var inRun []probe
	for _, p := range rows {
		if p.Run == nil {
			continue
		}
		args, _ := json.Marshal(append([]string{"stepexec-probe", p.ID}, e.expand(p)...))
		fmt.Fprintf(&df, "RUN %s\n", args)
		inRun = append(inRun, p)
		stepOf[p.ID] = len(inRun) + 1 // FROM is step 1
	}
	ctxDir := e.a.writeContext(t, "attacks-"+tag, df.String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.a.command(ctx, "build", "--progress=plain", "-t", tag, ctxDir)
	cmd.Env = append(cmd.Env, canaryVar+"="+e.canary)
	start := time.Now()
	r := runCmd(t, cmd)
	if took := time.Since(start); r.code != 0 || took > 2*time.Minute {
		t.Errorf("the attack build (%d steps, %v; want success within 2m): %s", len(inRun)+1, took.Round(time.Millisecond), r)
	}
	verdicts := parseVerdicts(r.stdout+r.stderr, stepOf)
	got := map[string]outcome{}
	for _, p := range inRun {
		o, ok := verdicts[p.ID]
		if !ok {
			o = outcome{verdictUnclear, "no verdict: the step printed none"}
		}
		if p.Check != nil {
			o = p.Check(t, e, o)
		}
		if o.Verdict == verdictRan {
			o = outcome{verdictUnclear, "it ran, but no host check decided: " + o.Detail}
		}
		got[p.ID] = o
	}
	return got
}

// verdictLine is stepexec-probe's output as --progress=plain shows it.
var verdictLine = regexp.MustCompile(`^#(\d+) PROBE (\S+) (BLOCKED|ESCAPED|RAN|UNCLEAR) ?(.*)$`)

// parseVerdicts maps each row ID to its verdict. A verdict counts only
// from the row's own step, and only once.
func parseVerdicts(out string, stepOf map[string]int) map[string]outcome {
	kinds := map[string]string{"BLOCKED": verdictBlocked, "ESCAPED": verdictEscaped, "RAN": verdictRan, "UNCLEAR": verdictUnclear}
	got := map[string]outcome{}
	for _, line := range strings.Split(out, "\n") {
		m := verdictLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id := m[2]
		step, _ := strconv.Atoi(m[1])
		switch _, seen := got[id]; {
		case stepOf[id] != step:
			got[id] = outcome{verdictUnclear, fmt.Sprintf("verdict printed by step %d, not the row's own", step)}
		case seen:
			got[id] = outcome{verdictUnclear, "more than one verdict"}
		default:
			got[id] = outcome{kinds[m[3]], m[4]}
		}
	}
	return got
}

// buildProbe builds stepexec-probe statically where every test user can
// read it.
func buildProbe(t *testing.T) string {
	t.Helper()
	probeBin, err := helperProgram("stepexec-probe", []string{"CGO_ENABLED=0"}, "./integration/probe")
	if err != nil {
		t.Fatalf("building stepexec-probe: %v", err)
	}
	return probeBin
}

// writeAttackBase writes a tarball of the Alpine minirootfs with probeBin
// added as /usr/local/bin/stepexec-probe (COPY is not supported yet), and
// extra members after it, readable by every test user.
func writeAttackBase(dest, probeBin string, extra ...tarMember) (err error) {
	in, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer in.Close()
	gz, err := gzip.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", tarball, err)
	}
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(out)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarball, err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	bin, err := os.ReadFile(probeBin)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: "./usr/local/bin/stepexec-probe", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Now()}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := writeMembers(tw, extra); err != nil {
		return err
	}
	return tw.Close()
}
