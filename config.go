package stepexec

import (
	"errors"
	"fmt"
	"io/fs"
	goruntime "runtime"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"

	"github.com/stepexec/stepexec/runtime"
)

func goarch() string { return goruntime.GOARCH }

// lookupEnv returns key's value in a KEY=VALUE list, later entries winning.
func lookupEnv(env []string, key string) string {
	val := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val = v
		}
	}
	return val
}

// setEnv sets key in a KEY=VALUE list in place of any earlier value, as
// docker's ENV does (the variable keeps its position).
func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// lookupUser resolves a USER spec ("", "name", "uid:gid", …) against the
// rootfs' /etc/passwd and /etc/group as docker does, including the
// supplementary groups the user is a member of. The files are opened
// inside root, so a symlinked /etc/passwd cannot reach the host's.
func lookupUser(root, spec string) (runtime.User, error) {
	if spec == "" {
		spec = "0"
	}
	passwd, err := securejoin.SecureJoin(root, "/etc/passwd")
	if err != nil {
		return runtime.User{}, fmt.Errorf("resolving /etc/passwd: %w", err)
	}
	group, err := securejoin.SecureJoin(root, "/etc/group")
	if err != nil {
		return runtime.User{}, fmt.Errorf("resolving /etc/group: %w", err)
	}
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := user.GetExecUserPath(spec, defaults, passwd, group)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return runtime.User{}, fmt.Errorf("user %q: %w", spec, err)
	}
	if u == nil {
		u = defaults
	}
	out := runtime.User{UID: uint32(u.Uid), GID: uint32(u.Gid)}
	for _, g := range u.Sgids {
		if uint32(g) != out.GID {
			out.AdditionalGIDs = append(out.AdditionalGIDs, uint32(g))
		}
	}
	return out, nil
}
