package main

import (
	"strings"
	"unicode/utf8"
)

// sanitize makes a line of step output (or a Dockerfile instruction) safe to
// show among the tty view's own cursor movements: a RUN's escape sequences
// could otherwise retitle the window, clear the screen, move the cursor
// over earlier lines or, on some terminals, answer back into stdin.
// Escape sequences (CSI, OSC, DCS and the like, colours included) are
// dropped; a carriage return keeps only what follows it, as the terminal
// would show a progress line; other control characters are shown in caret
// notation (^G); C1 controls and bytes that are not UTF-8 become U+FFFD.
// Plain output keeps the bytes as they are, for logs.
func sanitize(line string) string {
	line = strings.TrimRight(line, "\r")
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	var b strings.Builder
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRuneInString(line[i:])
		switch {
		case r == 0x1b:
			i += escapeLen(line[i:])
			continue
		case r == utf8.RuneError && size == 1, r >= 0x80 && r <= 0x9f:
			b.WriteRune(utf8.RuneError)
		case r == '\t':
			b.WriteByte('\t')
		case r < 0x20:
			b.WriteByte('^')
			b.WriteByte(byte(r) + '@')
		case r == 0x7f:
			b.WriteString("^?")
		default:
			b.WriteString(line[i : i+size])
		}
		i += size
	}
	return b.String()
}

// escapeLen is the length of the escape sequence s starts with (s[0] is
// ESC), as ECMA-48 delimits them; an unterminated one runs to the end.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[': // CSI: parameter and intermediate bytes, then a final byte
		for i := 2; i < len(s); i++ {
			switch c := s[i]; {
			case c >= 0x40 && c <= 0x7e:
				return i + 1
			case c < 0x20 || c > 0x7e: // malformed: drop what came so far
				return i
			}
		}
		return len(s)
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: up to BEL or ST
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	// Two-byte sequences (ESC c, ESC 7, …), with intermediate bytes.
	i := 1
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) {
		i++
	}
	return i
}
