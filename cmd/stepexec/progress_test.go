package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stepexec/stepexec"
	"github.com/stepexec/stepexec/dockerfile"
)

func TestSanitize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"\x1b[31mred\x1b[0m and \x1b[1;32mgreen\x1b[m", "red and green"},
		{"\x1b]0;owned title\x07after", "after"},
		{"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"\x1b[2J\x1b[Hcleared", "cleared"},
		{"\x1bPdevice control\x1b\\x", "x"},
		{"\x1bcreset", "reset"},
		{"\x1b(Bcharset", "charset"},
		{"10%\r50%\r100%", "100%"},
		{"crlf line\r", "crlf line"},
		{"bell\x07 bs\b del\x7f nul\x00", "bell^G bs^H del^? nul^@"},
		{"tab\tkept", "tab\tkept"},
		{"c1 \u009b31m csi", "c1 \ufffd31m csi"},
		{"bad \xff utf8", "bad \ufffd utf8"},
		{"unterminated \x1b[12", "unterminated "},
		{"unterminated osc \x1b]0;title", "unterminated osc "},
		{"lone esc \x1b", "lone esc "},
		{"héllo wörld ✓", "héllo wörld ✓"},
	}
	for _, c := range cases {
		if got := sanitize(c.in); got != c.want {
			t.Errorf("sanitize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// hostile is step output that would take over a terminal if passed raw.
const hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\rover\n\x1b[1A\x1b[2Kup\x07\n"

// TestTTYShowsNoStepControlSequences: in the tty view a failed RUN's output
// reaches the terminal without its escape sequences; plain output (logs)
// keeps them.
func TestTTYShowsNoStepControlSequences(t *testing.T) {
	for _, mode := range []string{"tty", "plain"} {
		var out bytes.Buffer
		p := newProgress(mode, &out)
		text := "RUN printf '\x1b[5mblink'"
		v := stepexec.Vertex{StageName: "stage-0", Step: 2, Steps: 2}
		p.Event(stepexec.Event{Kind: stepexec.StepStarted, Vertex: v, Text: text})
		w := p.Output(v)
		fmt.Fprint(w, hostile)
		err := &stepexec.StepError{Location: dockerfile.Location{File: "Dockerfile", Line: 2}, Text: text, ExitCode: 1}
		p.Finish(err)
		got := out.String()
		if mode == "plain" {
			if !strings.Contains(got, "\x1b]0;pwned\x07") || !strings.Contains(got, "\x1b[1A") {
				t.Errorf("plain output lost the step's bytes:\n%q", got)
			}
			continue
		}
		// The view's own sequences are "\r\x1b[2K" at the start of its lines.
		own := strings.ReplaceAll(got, "\r\x1b[2K", "")
		if strings.ContainsAny(own, "\x1b\x07\r") {
			t.Errorf("tty output passes control sequences through:\n%q", got)
		}
		for _, want := range []string{"    over\n", "    up^G\n", "RUN printf 'blink'"} {
			if !strings.Contains(got, want) {
				t.Errorf("tty output lacks %q:\n%q", want, got)
			}
		}
	}
}
