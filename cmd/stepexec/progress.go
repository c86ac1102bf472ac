package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"

	"github.com/stepexec/stepexec"
)

// progressPrinter renders build events. Plain mode prints one line per
// event, prefixed "#N" (N numbers the steps in the order they start, as
// `docker build --progress=plain` numbers vertices), so a RUN's life is
// visible: sandbox created → command ran → diff → layer → sandbox removed.
// Tty mode prints a line per finished instruction and keeps step output out
// of the way unless the step fails; what it shows of a step is sanitized
// (escape sequences dropped), plain mode passes it through. Events arrive
// from concurrent stages.
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	ids   map[stepexec.Vertex]int // vertex → its #N
	text  map[int]string
	summ  map[int]string
	tails map[int]*tailBuffer // tty: each running step's output, shown if it fails
	last  int                 // the last vertex that started
}

func newProgress(mode string, w io.Writer) *progressPrinter {
	if mode == "quiet" {
		w = io.Discard
	}
	return &progressPrinter{w: w, tty: mode == "tty", ids: map[stepexec.Vertex]int{},
		text: map[int]string{}, summ: map[int]string{}, tails: map[int]*tailBuffer{}}
}

// id numbers a vertex (0 for build-wide events); callers hold p.mu.
func (p *progressPrinter) id(v stepexec.Vertex) int {
	if v.Step == 0 {
		return 0
	}
	n, ok := p.ids[v]
	if !ok {
		n = len(p.ids) + 1
		p.ids[v] = n
	}
	return n
}

// label is "[2/5]" or, past a single unnamed stage, "[build 2/5]".
func label(v stepexec.Vertex) string {
	if v.Stage == 0 && v.StageName == "stage-0" {
		return fmt.Sprintf("[%d/%d]", v.Step, v.Steps)
	}
	return fmt.Sprintf("[%s %d/%d]", v.StageName, v.Step, v.Steps)
}

func (p *progressPrinter) Event(e stepexec.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.id(e.Vertex)
	if p.tty {
		p.ttyEvent(n, e)
		return
	}
	pre := fmt.Sprintf("#%d ", n)
	if n == 0 {
		pre = fmt.Sprintf("#%d ", len(p.ids)+1)
	}
	switch e.Kind {
	case stepexec.StepStarted:
		fmt.Fprintf(p.w, "%s%s %s\n", pre, label(e.Vertex), e.Text)
	case stepexec.BaseResolved:
		fmt.Fprintf(p.w, "%sresolved %s %s\n", pre, e.Name, e.Digest)
	case stepexec.SandboxCreated:
		fmt.Fprintf(p.w, "%ssandbox created in %s\n", pre, ms(e.Duration))
	case stepexec.CommandExited:
		fmt.Fprintf(p.w, "%scommand ran: exit code %d in %.3fs\n", pre, e.ExitCode, e.Duration.Seconds())
	case stepexec.FilesCopied:
		fmt.Fprintf(p.w, "%scopied %s, %s in %s\n", pre, plural(e.Files, "file"), bytesText(e.Bytes), ms(e.Duration))
	case stepexec.LayerDiffed:
		if e.Empty {
			fmt.Fprintf(p.w, "%sdiff: no changes, no layer (%s)\n", pre, ms(e.Duration))
		} else {
			fmt.Fprintf(p.w, "%sdiff: %s changed, %s, committed in %s\n", pre, plural(e.Files, "file"), bytesText(e.Bytes), ms(e.Duration))
		}
	case stepexec.LayerCommitted:
		fmt.Fprintf(p.w, "%slayer %s\n", pre, e.Digest)
	case stepexec.SandboxRemoved:
		fmt.Fprintf(p.w, "%ssandbox removed: processes and namespaces in %s, snapshot with the commit\n", pre, ms(e.Duration))
	case stepexec.StepCached:
		fmt.Fprintf(p.w, "%sCACHED\n", pre)
	case stepexec.StepDone:
		fmt.Fprintf(p.w, "%sDONE %.3fs\n", pre, e.Duration.Seconds())
	case stepexec.Warning:
		fmt.Fprintf(p.w, "WARNING: %s\n", e.Text)
	case stepexec.ImageWritten:
		fmt.Fprintf(p.w, "%swriting image %s done\n", pre, e.Digest)
	case stepexec.ImageNamed:
		fmt.Fprintf(p.w, "%snaming to %s done\n", pre, e.Name)
	case stepexec.OutputWritten:
		fmt.Fprintf(p.w, "%sexporting %s to %s done\n", pre, outputKind(e.Text), e.Name)
	case stepexec.ImagePulling:
		fmt.Fprintf(p.w, "%spulling %s\n", pre, e.Name)
	case stepexec.ImagePulled:
		fmt.Fprintf(p.w, "%spulled %s %s in %.3fs\n", pre, e.Name, e.Digest, e.Duration.Seconds())
	case stepexec.ImagePushed:
		fmt.Fprintf(p.w, "%spushed %s@%s in %.3fs\n", pre, e.Name, e.Digest, e.Duration.Seconds())
	}
}

// outputKind names what an --output type writes.
func outputKind(typ string) string {
	switch typ {
	case "oci", "":
		return "OCI image"
	case "docker":
		return "docker archive"
	case "local":
		return "root filesystem"
	case "tar":
		return "root filesystem tar"
	}
	return typ
}

// transferLog is where a build's pulls and pushes write their
// podman-style lines: shown in plain mode, dropped otherwise.
func (p *progressPrinter) transferLog() io.Writer {
	if p.tty || p.w == io.Discard {
		return nil
	}
	return &lineWriter{p: p, prefix: "registry: "}
}

func (p *progressPrinter) ttyEvent(n int, e stepexec.Event) {
	switch e.Kind {
	case stepexec.StepStarted:
		p.last = n
		p.text[n] = label(e.Vertex) + " " + sanitize(e.Text)
		p.tails[n] = &tailBuffer{max: 20}
		fmt.Fprintf(p.w, "\r\x1b[2K => %s", p.text[n])
	case stepexec.StepCached:
		p.summ[n] = "CACHED"
	case stepexec.LayerDiffed:
		if e.Empty {
			p.summ[n] = "no changes"
		} else {
			p.summ[n] = fmt.Sprintf("%s, %s", plural(e.Files, "file"), bytesText(e.Bytes))
		}
	case stepexec.StepDone:
		extra := ""
		if s := p.summ[n]; s != "" {
			extra = "  (" + s + ")"
		}
		fmt.Fprintf(p.w, "\r\x1b[2K => %s  %.2fs%s\n", p.text[n], e.Duration.Seconds(), extra)
		delete(p.tails, n)
	case stepexec.Warning:
		fmt.Fprintf(p.w, "\r\x1b[2K WARNING: %s\n", e.Text)
	case stepexec.ImageWritten:
		fmt.Fprintf(p.w, " => writing image %s\n", e.Digest)
	case stepexec.ImageNamed:
		fmt.Fprintf(p.w, " => naming to %s\n", e.Name)
	case stepexec.OutputWritten:
		fmt.Fprintf(p.w, " => exporting %s to %s\n", outputKind(e.Text), e.Name)
	case stepexec.ImagePulling:
		fmt.Fprintf(p.w, "\r\x1b[2K => pulling %s", e.Name)
	case stepexec.ImagePulled:
		fmt.Fprintf(p.w, "\r\x1b[2K => pulled %s  %.2fs\n", e.Name, e.Duration.Seconds())
	case stepexec.ImagePushed:
		fmt.Fprintf(p.w, " => pushed %s@%s  %.2fs\n", e.Name, e.Digest, e.Duration.Seconds())
	}
}

// Output returns where a step's stdout and stderr go: in plain mode the
// terminal, a line at a time with the step's prefix; in tty mode a buffer.
func (p *progressPrinter) Output(v stepexec.Vertex) io.Writer {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.id(v)
	return &lineWriter{p: p, n: n, prefix: fmt.Sprintf("#%d ", n)}
}

// Finish ends the display; on failure a tty shows the failed step's output.
func (p *progressPrinter) Finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty || err == nil {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[2K => %s  ERROR\n", p.text[p.last])
	var se *stepexec.StepError
	if errors.As(err, &se) {
		for n, tail := range p.tails {
			if p.text[n] == "" {
				continue
			}
			for _, line := range tail.lines {
				fmt.Fprintf(p.w, "    %s\n", line)
			}
		}
	}
}

// lineWriter turns a step's output into whole lines, so stdout and stderr,
// written concurrently, never interleave mid-line.
type lineWriter struct {
	p      *progressPrinter
	n      int
	prefix string
	buf    bytes.Buffer
	mu     sync.Mutex
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			// Keep the partial line for later; a very long one is flushed.
			if len(line) > 64<<10 {
				l.emit(line)
			} else {
				l.buf.Reset()
				l.buf.WriteString(line)
			}
			return len(b), nil
		}
		l.emit(strings.TrimSuffix(line, "\n"))
	}
}

// Flush emits a last line that had no newline.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.emit(l.buf.String())
		l.buf.Reset()
	}
}

func (l *lineWriter) emit(line string) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	if l.p.tty {
		if t := l.p.tails[l.n]; t != nil {
			t.add(sanitize(line))
		}
		return
	}
	fmt.Fprintf(l.p.w, "%s%s\n", l.prefix, line)
}

type tailBuffer struct {
	max   int
	lines []string
}

func (t *tailBuffer) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func bytesText(n int64) string {
	if n < 1000 {
		return plural(int(n), "byte")
	}
	return units.HumanSizeWithPrecision(float64(n), 3)
}
