package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Known is one accepted difference from BuildKit, a row of
// integration/KNOWN-DIFFERENCES.md's table:
//
//	| builder | case | what | reason |
//
// Case and What may hold * (any run of characters, / included) and ?.
type Known struct {
	Builder, Case, What, Reason string
	Line                        int // in the file, for messages

	caseRE, whatRE *regexp.Regexp
}

// Matches reports whether d, seen with builder on case, is this entry.
func (k *Known) Matches(builder, caseName string, d Difference) bool {
	return k.Builder == builder && k.caseRE.MatchString(caseName) && k.whatRE.MatchString(d.What)
}

// Builders whose differences may be listed. stepexec's and BuildKit's rows
// must cite their source (a link), buildah's may be just described.
var knownBuilders = map[string]bool{"stepexec": true, "buildah": true, "buildkit": true}

// ParseKnown reads every table row after a header row starting with
// "| builder |"; other text is documentation for humans.
func ParseKnown(data []byte) ([]*Known, error) {
	var out []*Known
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		switch {
		case len(cells) > 0 && strings.EqualFold(cells[0], "builder"):
			inTable = true
			continue
		case !inTable || strings.Trim(strings.Join(cells, ""), "-: ") == "":
			continue
		}
		k, err := knownRow(cells, n)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, sc.Err()
}

func knownRow(cells []string, line int) (*Known, error) {
	if len(cells) != 4 {
		return nil, fmt.Errorf("line %d: want 4 cells (builder, case, what, reason), got %d", line, len(cells))
	}
	k := &Known{Builder: cells[0], Case: unquote(cells[1]), What: unquote(cells[2]), Reason: cells[3], Line: line}
	if !knownBuilders[k.Builder] {
		return nil, fmt.Errorf("line %d: unknown builder %q (stepexec, buildah, buildkit)", line, k.Builder)
	}
	if k.Case == "" || k.What == "" || k.Reason == "" {
		return nil, fmt.Errorf("line %d: case, what and reason must all be given", line)
	}
	if k.Builder != "buildah" && !strings.Contains(k.Reason, "https://") {
		return nil, fmt.Errorf("line %d: a %s difference must cite BuildKit's source or docs (a https:// link)", line, k.Builder)
	}
	k.caseRE, k.whatRE = glob(k.Case), glob(k.What)
	return k, nil
}

// splitRow splits "| a | b |" into its trimmed cells; "\|" is a literal bar.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	line = strings.ReplaceAll(line, `\|`, "\x00")
	parts := strings.Split(line, "|")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(strings.ReplaceAll(p, "\x00", "|"))
	}
	return parts
}

// unquote drops the backquotes a cell is written in for readability.
func unquote(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(s, "`"), "`")
}

func glob(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Classify splits diffs into those a Known entry lists and the rest, and
// marks the entries used in used (which may be nil).
func Classify(known []*Known, builder, caseName string, diffs []Difference, used map[*Known]bool) (listed, unlisted []Difference) {
	for _, d := range diffs {
		matched := false
		for _, k := range known {
			if k.Matches(builder, caseName, d) {
				matched = true
				if used != nil {
					used[k] = true
				}
				break
			}
		}
		if matched {
			listed = append(listed, d)
		} else {
			unlisted = append(unlisted, d)
		}
	}
	return listed, unlisted
}
