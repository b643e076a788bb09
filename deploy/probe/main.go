// Command probe is the container healthcheck of deploy/Dockerfile: the runtime image has no
// shell, curl or wget. It GETs one URL and exits 0 on a 2xx answer within two seconds.
//
//	probe http://127.0.0.1:8080/healthz
//
// It is a module of its own so that it stays out of parkd's build, tests and dependencies.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe URL")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, "probe:", os.Args[1], "answered", resp.Status)
		os.Exit(1)
	}
}
