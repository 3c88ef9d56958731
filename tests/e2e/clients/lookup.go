// Go's own resolver (CGO_ENABLED=0: net never calls the C library), as controllers in a pod use
// it: /etc/resolv.conf's nameserver, search list and ndots.
//
//	lookup host NAME              LookupIPAddr: the addresses, sorted, one per line
//	lookup addr IP                LookupAddr: the names
//	lookup srv SERVICE PROTO NAME LookupSRV: "PORT TARGET" lines, sorted
//	lookup cname NAME             LookupCNAME
//	lookup loop MS NAME...        LookupIPAddr of each NAME in turn, MS ms apart, until killed;
//	                              one line per lookup: START_MS LATENCY_MS NAME ADDR,...|ERR:CODE
//
// A failed lookup prints "ERR CODE" (NOTFOUND, TIMEOUT, TEMPORARY, OTHER) and exits 2.
// The one-shot modes print the lookup's own duration on stderr: "lookup-ms MS".
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func code(err error) string {
	var d *net.DNSError
	if errors.As(err, &d) {
		switch {
		case d.IsNotFound:
			return "NOTFOUND"
		case d.IsTimeout:
			return "TIMEOUT"
		case d.IsTemporary:
			return "TEMPORARY"
		}
	}
	return "OTHER"
}

func hostAddrs(r *net.Resolver, name string) ([]string, error) {
	ips, err := r.LookupIPAddr(context.Background(), name)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, ip := range ips {
		s := ip.IP.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

var start time.Time

// done ends a one-shot lookup: its duration on stderr, and on error "ERR CODE", exit 2.
func done(err error) {
	fmt.Fprintf(os.Stderr, "lookup-ms %.3f\n", float64(time.Since(start).Microseconds())/1000)
	if err != nil {
		fmt.Printf("ERR %s\n", code(err))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func main() {
	r := &net.Resolver{PreferGo: true}
	ctx := context.Background()
	a := os.Args[1:]
	switch {
	case len(a) == 2 && a[0] == "host":
		start = time.Now()
		out, err := hostAddrs(r, a[1])
		done(err)
		fmt.Println(strings.Join(out, "\n"))
	case len(a) == 2 && a[0] == "addr":
		start = time.Now()
		names, err := r.LookupAddr(ctx, a[1])
		done(err)
		sort.Strings(names)
		fmt.Println(strings.Join(names, "\n"))
	case len(a) == 4 && a[0] == "srv":
		start = time.Now()
		_, srvs, err := r.LookupSRV(ctx, a[1], a[2], a[3])
		done(err)
		var out []string
		for _, s := range srvs {
			out = append(out, fmt.Sprintf("%d %s", s.Port, s.Target))
		}
		sort.Strings(out)
		fmt.Println(strings.Join(out, "\n"))
	case len(a) == 2 && a[0] == "cname":
		start = time.Now()
		c, err := r.LookupCNAME(ctx, a[1])
		done(err)
		fmt.Println(c)
	case len(a) >= 3 && a[0] == "loop":
		ms, _ := strconv.Atoi(a[1])
		names := a[2:]
		for i := 0; ; i++ {
			name := names[i%len(names)]
			start := time.Now()
			out, err := hostAddrs(r, name)
			lat := float64(time.Since(start).Microseconds()) / 1000
			res := strings.Join(out, ",")
			if err != nil {
				res = "ERR:" + code(err)
			}
			fmt.Printf("%d %.3f %s %s\n", start.UnixMilli(), lat, name, res)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: lookup host NAME | addr IP | srv SERVICE PROTO NAME | cname NAME | loop MS NAME...")
		os.Exit(1)
	}
}
