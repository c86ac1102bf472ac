package dockerfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// maxLine is the longest line BuildKit's parser reads: its bufio.Scanner
// must hold a line and its newline in 64 KiB.
const maxLine = bufio.MaxScanTokenSize - 1

// checkText refuses what BuildKit's parser would misreport or let through.
// A line over maxLine stops its scanner, which then reports the line before
// the long one; the same scan here finds the right line. A NUL byte cannot
// be passed to a process (arguments and environment are C strings), so a
// RUN holding one would fail only when it runs.
func checkText(data []byte, file string) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("%s:%d: line longer than %d bytes, the most a Dockerfile line may hold (split it with \\ continuation lines)", file, line+1, maxLine)
	}
	if err := checkDirectives(data, file); err != nil {
		return err
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		start := bytes.LastIndexByte(data[:i], '\n') + 1
		line := bytes.Count(data[:start], []byte("\n")) + 1
		return fmt.Errorf("%s:%d: NUL byte at column %d: a Dockerfile must be text", file, line, i-start+1)
	}
	return nil
}

// checkDirectives reports a bad parser directive (`# escape=x`, a repeated
// one) at its line: BuildKit's parser names the line before it, and none
// for the first line.
func checkDirectives(data []byte, file string) error {
	var dp parser.DirectiveParser
	data = bytes.TrimPrefix(data, []byte{0xEF, 0xBB, 0xBF}) // a BOM, as the parser drops it
	for n, line := range bytes.Split(data, []byte("\n")) {
		// Leading white space as the parser sees it (unicode.IsSpace:
		// a form feed too).
		line = bytes.TrimLeftFunc(bytes.TrimRight(line, "\r"), unicode.IsSpace)
		d, err := dp.ParseLine(line)
		if err == nil && d != nil && strings.EqualFold(d.Name, "escape") && d.Value != "`" && d.Value != `\` {
			err = fmt.Errorf("invalid escape token %q: want ` or \\", d.Value)
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, n+1, err)
		}
		if d == nil && (len(line) == 0 || line[0] != '#') {
			return nil // directives come first
		}
	}
	return nil
}
