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
		{in: "type=docker,dest=x", err: `type "docker" is not supported yet`},
		{in: "dest=x", err: `type "" is not supported yet`},
		{in: "type=oci", err: "dest=PATH is required"},
		{in: "type=oci,dest=x,compression=zstd", err: `option "compression" is not supported`},
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
		if err != nil || len(outs) != 1 || outs[0].Dest != c.dest || outs[0].Name != c.name {
			t.Errorf("parseOutputs(%q) = %+v, %v", c.in, outs, err)
		}
	}
}
