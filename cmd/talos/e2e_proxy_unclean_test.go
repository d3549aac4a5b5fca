package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestE2E_SidecarUncleanPathIsACheck: in HTTP mode an unclean path (//x,
// /a/../b) is judged like any other, not answered with a redirect that
// repeats it, query and all (a credential pasted into the URL among them).
func TestE2E_SidecarUncleanPathIsACheck(t *testing.T) {
	srv := startServer(t)
	p := startProxy(t, srv.grpc)
	const marker = "sk_pasted_Qz7mK2vR9xL4"
	host := strings.TrimPrefix(p.http, "http://")
	for _, target := range []string{"//read/x?k=" + marker, "/read/../admin?k=" + marker, "/./x?k=" + marker} {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401 (no credential presented)", target, resp.StatusCode)
		}
		if strings.Contains(resp.Header.Get("Location"), marker) || strings.Contains(body.String(), marker) {
			t.Errorf("%s: the answer repeats the request target", target)
		}
	}
}
