package rootfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// osReleasePaths are tried in order, as systemd's os-release(5) says.
var osReleasePaths = []string{"etc/os-release", "usr/lib/os-release"}

// OSRelease parses root's os-release file (etc/os-release, else
// usr/lib/os-release), resolved inside root (Alpine's etc/os-release is a
// symlink), into its keys and values (ID, VERSION_ID, PRETTY_NAME, …), with
// quotes and backslash escapes removed. When neither file exists the error
// wraps os.ErrNotExist.
func OSRelease(root string) (map[string]string, error) {
	rt, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	for _, p := range osReleasePaths {
		f, err := rt.openFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err // names the file
		}
		data, err := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		if err != nil {
			return nil, err
		}
		return parseOSRelease(data), nil
	}
	return nil, fmt.Errorf("os-release in %s: none of %s: %w", root, strings.Join(osReleasePaths, ", "), os.ErrNotExist)
}

func parseOSRelease(data []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		m[k] = unquote(v)
	}
	return m
}

// unquote undoes shell-style quoting as os-release(5) allows it.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

var (
	repoRe    = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRe     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	alpineVer = regexp.MustCompile(`^([0-9]+\.[0-9]+)\.[0-9]+$`)
)

// ImportNames returns the image names given to an imported root filesystem
// with this os-release when the user names none: ID:VERSION_ID and ID:latest
// (e.g. debian:12, debian:latest), plus ID:MAJOR.MINOR for Alpine's
// three-part versions (alpine:3.20.3, alpine:3.20, alpine:latest), as the
// official images are tagged. Without a usable VERSION_ID only ID:latest is
// returned; without a usable ID (not a valid repository name), nil.
func ImportNames(osRelease map[string]string) []string {
	id := osRelease["ID"]
	if !repoRe.MatchString(id) {
		return nil
	}
	var names []string
	if v := osRelease["VERSION_ID"]; tagRe.MatchString(v) {
		names = append(names, id+":"+v)
		if m := alpineVer.FindStringSubmatch(v); id == "alpine" && m != nil {
			names = append(names, id+":"+m[1])
		}
	}
	return append(names, id+":latest")
}
