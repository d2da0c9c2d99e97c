package testutil

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Requests on one kept-alive client connection go to the nodes in turn.
func TestLoadBalancerRoundRobinPerRequest(t *testing.T) {
	var backends []string
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "node%d", i+1)
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, srv.Listener.Addr().String())
	}
	lb := StartLoadBalancer(t, backends...)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	var seq []string
	for range 9 {
		resp, err := client.Get("http://" + lb.Host + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seq = append(seq, string(b))
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("two requests in a row went to one node: %v", seq)
		}
	}
}
