package integration

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runStdin runs the binary as a with stdin fed from input.
func (a *account) runStdin(t *testing.T, input string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := a.command(ctx, args...)
	cmd.Stdin = strings.NewReader(input)
	return runCmd(t, cmd)
}

// TestRegistryAuthLoginLogout: a registry with htpasswd auth refuses
// anonymous and wrong credentials with a message saying to log in;
// login stores the credentials in the containers auth file
// ($XDG_RUNTIME_DIR/containers/auth.json) after checking them, pull and
// push use them, logout removes them; $REGISTRY_AUTH_FILE and docker's
// config.json with a credential helper work too; the password is never
// printed.
func TestRegistryAuthLoginLogout(t *testing.T) {
	const user, pass = "tester", "s3cret-PASS-w0rd"
	reg := startRegistry(t, registryOptions{users: map[string]string{user: pass}})
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		ref := reg.Host + "/" + a.name + "/auth:1"
		a.importAlpine(t)
		a.mustRun(t, "build", "-q", "-t", ref, a.writeContext(t, "auth", "FROM alpine\nRUN echo auth > /auth.txt\n"))
		var outputs []result
		expectFail := func(r result, want ...string) {
			t.Helper()
			outputs = append(outputs, r)
			for _, w := range want {
				if r.code == 0 || !strings.Contains(r.stderr, w) {
					t.Errorf("want a failure saying %q: %s", w, r)
				}
			}
		}
		expectFail(a.run(t, "push", ref), "unauthorized", "stepexec login "+reg.Host)
		expectFail(a.runStdin(t, "wrong\n", "login", "-u", user, "--password-stdin", reg.Host), "unauthorized")
		authFile := a.runtimeDir() + "/containers/auth.json"
		if _, err := os.Stat(authFile); err == nil {
			t.Errorf("a failed login wrote %s", authFile)
		}
		login := a.runStdin(t, pass+"\n", "login", "-u", user, "--password-stdin", reg.Host)
		outputs = append(outputs, login)
		if login.code != 0 || !strings.Contains(login.stderr, authFile) {
			t.Fatalf("login: %s (want it to name %s)", login, authFile)
		}
		if raw, _ := os.ReadFile(authFile); !strings.Contains(string(raw), reg.Host) {
			t.Errorf("%s holds no entry for %s: %s", authFile, reg.Host, raw)
		}
		outputs = append(outputs, a.mustRun(t, "push", ref))
		pulled := a.otherStore("authed")
		outputs = append(outputs, pulled.mustRun(t, "pull", ref))
		outputs = append(outputs, a.mustRun(t, "logout", reg.Host))
		expectFail(a.otherStore("loggedout").run(t, "pull", ref), "unauthorized", "stepexec login")

		// $REGISTRY_AUTH_FILE comes first.
		envFile := filepath.Join(a.work, "auth-env.json")
		a.writeUserFile(t, envFile, authJSON(reg.Host, user, pass))
		outputs = append(outputs, a.withEnv("REGISTRY_AUTH_FILE="+envFile).otherStore("envauth").mustRun(t, "pull", ref))

		// Docker's config.json with a credential helper.
		bin := a.userDir(t, filepath.Join(a.work, "bin"))
		writeExecutable(t, filepath.Join(bin, "docker-credential-stepexectest"),
			"#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\""+user+"\",\"Secret\":\""+pass+"\"}'\n")
		a.writeUserFile(t, filepath.Join(a.home, ".docker", "config.json"), `{"credHelpers":{"`+reg.Host+`":"stepexectest"}}`)
		helper := a.withEnv("PATH=" + bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		outputs = append(outputs, helper.otherStore("helper").mustRun(t, "pull", ref))
		expectFail(helper.run(t, "logout", reg.Host), "docker logout")

		for _, r := range outputs {
			if strings.Contains(r.stdout+r.stderr, pass) {
				t.Errorf("the password was printed: %s", r)
			}
		}
		pulled.assertClean(t)
	})
}

// runtimeDir is the XDG_RUNTIME_DIR ownHome gave a.
func (a *account) runtimeDir() string {
	for _, e := range a.env {
		if v, ok := strings.CutPrefix(e, "XDG_RUNTIME_DIR="); ok {
			return v
		}
	}
	return ""
}

func authJSON(host, user, pass string) string {
	return `{"auths":{"` + host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}}`
}

// TestRegistryTLS: a registry with a certificate of an unknown CA is
// refused, saying how to trust it or mark it insecure; --cert-dir, the
// user's certs.d, registries.conf's insecure and --tls-verify=false each
// make it work.
func TestRegistryTLS(t *testing.T) {
	reg := startRegistry(t, registryOptions{tls: true})
	ca, err := os.ReadFile(reg.caFile)
	if err != nil {
		t.Fatal(err)
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		ref := reg.Host + "/" + a.name + "/tls:1"
		a.importAlpine(t)
		a.mustRun(t, "build", "-q", "-t", ref, a.writeContext(t, "tls", "FROM alpine\nRUN echo tls > /tls.txt\n"))
		r := a.run(t, "push", ref)
		for _, want := range []string{"TLS", "certificate", "certs.d/" + reg.Host + "/ca.crt", "insecure = true", "--tls-verify=false"} {
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("push to an unverifiable registry: want an error saying %q: %s", want, r)
			}
		}
		a.mustRun(t, "push", "--tls-verify=false", ref)

		certDir := filepath.Join(a.work, "certs")
		a.writeUserFile(t, filepath.Join(certDir, "ca.crt"), string(ca))
		a.otherStore("certdir").mustRun(t, "pull", "--cert-dir", certDir, ref)

		fails := a.otherStore("nocert")
		if r := fails.run(t, "pull", ref); r.code == 0 || !strings.Contains(r.stderr, "TLS") {
			t.Errorf("pull without the CA: %s", r)
		}
		fails.assertClean(t)

		a.writeUserFile(t, filepath.Join(a.home, ".config", "containers", "certs.d", reg.Host, "ca.crt"), string(ca))
		a.otherStore("certsd").mustRun(t, "pull", ref)
		os.RemoveAll(filepath.Join(a.home, ".config", "containers", "certs.d"))

		a.writeUserFile(t, filepath.Join(a.home, ".config", "containers", "registries.conf"),
			"[[registry]]\nlocation = \""+reg.Host+"\"\ninsecure = true\n")
		a.otherStore("insecure").mustRun(t, "pull", ref)
	})
}
