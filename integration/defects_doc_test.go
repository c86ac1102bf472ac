package integration

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// defect is one hole the attack and fault run of issue #5 found, with the
// tests that failed before its fix and keep it fixed (they run in every
// scripts/test.sh, as the unprivileged user and as root where they apply).
type defect struct {
	ID, Severity, Attack, Fix string
	Tests                     []string
}

var defects = []defect{
	{"1", "critical", "real root: another local user runs a setuid-root file a RUN wrote, through the snapshot's upper dir or the overlay mount in the host's mount table",
		"real-root builds run in a private mount namespace; store and snapshot dirs 0700, no o+x; step rootfs mounts on a private tmpfs",
		[]string{"TestRootStepOutOfOtherUsersReach", "TestStepSnapshotsStayPrivate", "TestOpenRepairsTraversal", "TestEnterRealRoot"}},
	{"2", "high", "real root: device nodes in a base image (kvm, hwrng) open the host's devices from a RUN",
		"overlays mounted nodev; docker's device cgroup rules for real-root steps",
		[]string{"TestBaseImageDeviceNodesOpenNothing", "TestDeviceCgroup", "TestSnapshotsAreNodev"}},
	{"3", "high", "rootless: SIGKILL of stepexec leaves its child finishing the build and tagging the image",
		"every re-exec re-arms the parent-death signal and checks getppid",
		[]string{"TestKilledBuildLeavesNothing", "TestEnteredChildDiesWithParent", "TestRearmParentDeath"}},
	{"4", "high", "SIGKILL of every stepexec process leaves the RUN's processes running",
		"a parent-death signal on the step's pid 1, its forking thread kept; a watcher kills steps whose pid 1 changed credentials",
		[]string{"TestKilledBuildLeavesNothing", "TestWatcherKillsWhenBuilderDies", "TestStepSurvivesThreadExits", "TestKilledBuildLeavesNothingAfterNextCommand"}},
	{"5", "medium", "a FIFO as the Dockerfile, the image's /etc/passwd or /etc/group, or /etc/os-release hangs stepexec for good",
		"every file opened for a Dockerfile, context, image or archive is opened O_PATH, checked, refused unless regular; waits honour cancellation",
		[]string{"TestFIFOsAreRefusedNotWaitedOn", "TestImportFromStalledStdinStopsOnSignal", "TestOpenRefusesWhatIsNotAFile", "TestLookupUserRefusesSpecialFiles"}},
	{"6", "medium", "rmi deletes the layers under a running build, which then fails with \"layer not known\"",
		"one GC rule with leases: rmi untags a running build's base and deletes it when the build ends",
		[]string{"TestRmiOfTheBaseDuringABuild", "TestHoldRacesDeleteImage"}},
	{"7", "medium", "a 10 KB tarball holding a 1 TB sparse file makes import write 1 TB of zeros",
		"holes stay holes; an entry larger than the free space is refused before writing; GNU 'S' entries read",
		[]string{"TestImportSparseTarball", "TestUnpackSparseKeepsHoles", "TestUnpackRefusesEntryLargerThanFreeSpace"}},
	{"8", "medium", "layers a SIGKILLed build committed stay in the store for good",
		"the next command collects what a killed build's lease held that no build cache entry keeps (its completed steps stay cached, as in BuildKit); stepexec prune for the rest",
		[]string{"TestKilledBuildKeepsItsCompletedSteps", "TestSIGKILLDuringCommitOrExport", "TestPrune", "TestOpenDropsDanglingLinks"}},
	{"9", "low", "real root: cgroup dirs of a killed build are never removed",
		"the next command removes the stepexec-PID cgroups of dead builders",
		[]string{"TestRemoveStaleCgroups", "TestKilledBuildLeavesNothingAfterNextCommand"}},
	{"10", "low", "the error for a line over 64 KB names the line before it",
		"the parser's input is checked first: long lines, NUL bytes and bad directives at their own line",
		[]string{"TestParseRefusesWhatCannotRun", "TestBadDockerfilesFailBeforeAnyStep"}},
	{"also", "-", "ENV quadratic in the number of variables; a NUL byte in RUN; --output under a file; a RUN's terminal control sequences in --progress=tty; a full disk during a RUN or its commit",
		"indexed variables; refused at parse time; the message names the file; the tty view is sanitized; a clear error and a usable store",
		[]string{"TestParseRefusesWhatCannotRun", "TestCheckOutput", "TestSanitize", "TestTTYShowsNoStepControlSequences", "TestDiskFull"}},
}

const defectsHeading = "## Defects found, and the tests that keep them fixed"

// renderDefects is ATTACKS.md's second section.
func renderDefects() string {
	var b strings.Builder
	b.WriteString(defectsHeading + "\n\n")
	b.WriteString("The attack and fault run of issue #5 found these; each test below failed\n")
	b.WriteString("before its fix and passes now (TestDefectsDocMatchesTable checks that each\n")
	b.WriteString("named test exists).\n\n")
	writeDocRow(&b, []string{"defect", "severity", "attack", "fix", "tests"})
	writeDocRow(&b, []string{"---", "---", "---", "---", "---"})
	for _, d := range defects {
		writeDocRow(&b, []string{d.ID, d.Severity, d.Attack, d.Fix, strings.Join(d.Tests, ", ")})
	}
	return b.String()
}

// TestDefectsDocMatchesTable: ATTACKS.md ends with the defects table as it
// is now, and every test it names exists in the repository.
func TestDefectsDocMatchesTable(t *testing.T) {
	doc := readAttacksDoc(t)
	i := strings.Index(doc, defectsHeading)
	if i < 0 || doc[i:] != renderDefects() {
		t.Errorf("%s's defects section is not the table's; regenerate it: go test ./integration -run TestAttacks -update (as root)", attacksDoc)
	}
	defined := testFuncs(t, repo)
	for _, d := range defects {
		for _, name := range d.Tests {
			if !defined[name] {
				t.Errorf("defect %s names %s, which no _test.go file defines", d.ID, name)
			}
		}
	}
}

// testFuncs lists the Test and Benchmark functions of the repository.
func testFuncs(t *testing.T, root string) map[string]bool {
	re := regexp.MustCompile(`(?m)^func ((Test|Benchmark|Fuzz)\w+)\(`)
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(fmt.Errorf("listing tests: %w", err))
	}
	return out
}
