package main

import (
	"strings"
	"testing"
)

func TestParseOutputs(t *testing.T) {
	cases := []struct {
		in         string
		dest, name string
		err        string
	}{
		{in: "type=oci,dest=/tmp/x", dest: "/tmp/x"},
		{in: "type=oci,dest=out.tar,name=app:1", dest: "out.tar", name: "localhost/app:1"},
		{in: " type = oci , dest = d ", dest: "d"},
		{in: "type=docker,dest=x.tar,name=app", dest: "x.tar", name: "localhost/app:latest"},
		{in: "type=local,dest=out", dest: "out"},
		{in: "type=tar,dest=out.tar", dest: "out.tar"},
		{in: `type=registry,"name=127.0.0.1:5000/a,127.0.0.1:5000/b"`, name: "127.0.0.1:5000/a"},
		{in: "type=image,name=reg.example/app,push=true", name: "reg.example/app"},
		{in: "type=registry,name=r.example/a,compression=zstd", name: "r.example/a"},
		{in: "type=image,name=x,push=maybe", err: `push: "maybe" is not true or false`},
		{in: "type=ftp,dest=x", err: `type "ftp" is not supported`},
		{in: "dest=x", err: "type= is required"},
		{in: "type=oci", err: "dest=PATH is required"},
		{in: "type=local", err: "dest=PATH is required"},
		{in: "type=oci,dest=x,compression=zstd", err: `option "compression" does not apply to type=oci`},
		{in: "type=local,dest=x,name=y", err: `option "name" does not apply to type=local`},
		{in: "oci", err: "is not KEY=VALUE"},
	}
	for _, c := range cases {
		outs, err := parseOutputs([]string{c.in})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseOutputs(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		name := ""
		if err == nil && len(outs) == 1 && len(outs[0].Names) > 0 {
			name = outs[0].Names[0]
		}
		if err != nil || len(outs) != 1 || outs[0].Dest != c.dest || name != c.name {
			t.Errorf("parseOutputs(%q) = %+v, %v", c.in, outs, err)
		}
	}
}

func TestBuildLimitFlags(t *testing.T) {
	cases := []struct {
		memory   string
		pids     int64
		wantMem  int64
		wantPids int64
		err      string
	}{
		{},
		{memory: "512m", wantMem: 512 << 20},
		{memory: "2g", pids: 100, wantMem: 2 << 30, wantPids: 100},
		{memory: "1048576", wantMem: 1 << 20},
		{pids: -1},
		{memory: "lots", err: `--memory "lots"`},
		{memory: "-5m", err: `--memory "-5m"`},
		{pids: -2, err: "--pids-limit -2"},
	}
	for _, c := range cases {
		bf := buildFlags{memory: c.memory, pidsLimit: c.pids}
		mem, pids, err := bf.limits()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: err %v, want %q", c, err, c.err)
			}
			continue
		}
		if err != nil || mem != c.wantMem || pids != c.wantPids {
			t.Errorf("%+v: %d, %d, %v; want %d, %d", c, mem, pids, err, c.wantMem, c.wantPids)
		}
	}
}
