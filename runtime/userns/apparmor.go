package userns

import (
	"fmt"
	"strings"
)

// AppArmor on Ubuntu 23.10+ (kernel.apparmor_restrict_unprivileged_userns=1)
// lets an unprivileged process make a user namespace with capabilities in
// it only when an AppArmor profile grants it `userns`; an unconfined one is
// moved to a profile that denies them. Ubuntu's apparmor package ships such
// profiles for podman, buildah and others (/etc/apparmor.d/podman):
// unconfined, plus `userns`. stepexec needs the same.

// apparmorProfileFile is where scripts/setup-host.sh --apparmor installs
// the profile.
const apparmorProfileFile = "/etc/apparmor.d/stepexec"

// AppArmorProfile is the profile that lets the binary at path create user
// namespaces, in the form Ubuntu's packages use for podman and buildah.
func AppArmorProfile(path string) string {
	return "abi <abi/4.0>,\ninclude <tunables/global>\n\n" +
		"profile stepexec \"" + path + "\" flags=(unconfined) {\n" +
		"  userns,\n\n" +
		"  include if exists <local/stepexec>\n}\n"
}

// checkAppArmor reports the restriction when it is on and this process
// runs unconfined; a process under a profile of its own is taken as
// allowed (the profile is the administrator's choice).
func (h host) checkAppArmor() error {
	if v, ok := readTrim(h.apparmorUNS); !ok || v != "1" {
		return nil
	}
	if label, ok := readTrim(h.apparmorLabel); ok && label != "unconfined" && label != "" {
		return nil
	}
	exe := h.executable
	if exe == "" {
		exe = "/usr/local/bin/stepexec"
	}
	return fmt.Errorf("AppArmor restricts unprivileged user namespaces (%s is 1) and %s runs unconfined: allow it as Ubuntu allows podman and buildah, with an AppArmor profile granting `userns` to its path: as root, `%s && apparmor_parser -r %s` (or `scripts/setup-host.sh --apparmor=%s`); keep the binary where only root can write, since the profile trusts whatever is at that path; or lift the restriction for every program with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
		h.apparmorUNS, exe, writeProfileCommand(exe, apparmorProfileFile), apparmorProfileFile, exe)
}

// writeProfileCommand is a one-line shell command writing exe's profile
// to file (printf %b: the profile's newlines travel as \n, its
// backslashes as \\).
func writeProfileCommand(exe, file string) string {
	escaped := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(AppArmorProfile(exe))
	return "printf '%b' " + shellQuote(escaped) + " > " + file
}

// shellQuote quotes s for a POSIX shell, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
