package conformance

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
)

// Serve serves the case's serve_http directory on 127.0.0.1 and returns
// its port and a stop function; port 0 and a no-op when the case has none.
func (p *Prepared) Serve() (int, func(), error) {
	if p.Spec.ServeHTTP == "" {
		return 0, func() {}, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, fmt.Errorf("case %s: serving HTTP: %w", p.Name, err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(p.Root, p.Spec.ServeHTTP)))}
	go srv.Serve(l)
	return l.Addr().(*net.TCPAddr).Port, func() { srv.Close() }, nil
}
