package egress_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/egress"
)

func TestGuardCheck(t *testing.T) {
	cases := []struct {
		name    string
		addr    string
		allow   string
		refused bool
	}{
		{"public IPv4", "93.184.216.34", "", false},
		{"public IPv6", "2606:4700::6810:84e5", "", false},
		{"loopback", "127.0.0.1", "", true},
		{"loopback elsewhere in 127/8", "127.8.9.10", "", true},
		{"IPv6 loopback", "::1", "", true},
		{"unspecified", "0.0.0.0", "", true},
		{"IPv6 unspecified", "::", "", true},
		{"private 10/8", "10.1.2.3", "", true},
		{"private 172.16/12", "172.31.255.1", "", true},
		{"just outside 172.16/12", "172.32.0.1", "", false},
		{"private 192.168/16", "192.168.1.1", "", true},
		{"link-local", "169.254.10.20", "", true},
		{"AWS and GCP metadata", "169.254.169.254", "", true},
		{"Oracle metadata", "192.0.0.192", "", true},
		{"Alibaba metadata in CGNAT", "100.100.100.200", "", true},
		{"CGNAT", "100.64.0.1", "", true},
		{"benchmarking", "198.18.0.1", "", true},
		{"multicast", "224.0.0.251", "", true},
		{"broadcast", "255.255.255.255", "", true},
		{"unique local", "fd12:3456::1", "", true},
		{"AWS IPv6 metadata", "fd00:ec2::254", "", true},
		{"IPv6 link-local", "fe80::1", "", true},
		{"IPv6 multicast", "ff02::1", "", true},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", "", true},
		{"IPv4-mapped metadata", "::ffff:169.254.169.254", "", true},
		{"IPv4-mapped private", "::ffff:10.0.0.1", "", true},
		{"IPv4-mapped public", "::ffff:93.184.216.34", "", false},
		{"IPv4-compatible loopback", "::127.0.0.1", "", true},
		{"NAT64 of loopback", "64:ff9b::7f00:1", "", true},
		{"NAT64 of metadata", "64:ff9b::a9fe:a9fe", "", true},
		{"NAT64 of private", "64:ff9b::a00:1", "", true},
		{"NAT64 of public", "64:ff9b::5db8:d822", "", false},
		{"local-use NAT64", "64:ff9b:1::a00:1", "", true},
		{"6to4 of private", "2002:a00:1::1", "", true},
		{"6to4 of public", "2002:5db8:d822::1", "", false},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "", true},
		{"zone does not hide link-local", "fe80::1%eth0", "", true},
		{"allowlisted loopback", "127.0.0.1", "127.0.0.1/32", false},
		{"allowlisted network", "10.20.30.40", "10.20.0.0/16", false},
		{"outside the allowlisted network", "10.21.0.1", "10.20.0.0/16", true},
		{"allowlist applies to the mapped form", "::ffff:10.20.0.5", "10.20.0.0/16", false},
		{"allowlist applies to the NAT64 form", "64:ff9b::a14:5", "10.20.0.0/16", false},
		{"allowlisted IPv6 loopback", "::1", "::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := egress.ParseAllowlist(tc.allow)
			require.NoError(t, err)
			err = egress.NewGuard(allow).Check(netip.MustParseAddr(tc.addr))
			if tc.refused {
				require.Error(t, err, "got allowed, want %s refused", tc.addr)
				assert.ErrorIs(t, err, egress.ErrRefused)
			} else {
				assert.NoError(t, err, "got refused, want %s allowed", tc.addr)
			}
		})
	}
}

func TestGuardCheckHost(t *testing.T) {
	g := egress.NewGuard(nil)
	assert.ErrorIs(t, g.CheckHost("127.0.0.1"), egress.ErrRefused)
	assert.ErrorIs(t, g.CheckHost("[::ffff:169.254.169.254]"), egress.ErrRefused)
	assert.NoError(t, g.CheckHost("hooks.example.org"), "hostnames are judged when dialled")
	assert.NoError(t, g.CheckHost("93.184.216.34"))
}

func TestParseAllowlist(t *testing.T) {
	got, err := egress.ParseAllowlist(" 10.1.0.0/16, 127.0.0.1 ,::1,,192.168.7.9/24")
	require.NoError(t, err)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("192.168.7.0/24"),
	}
	assert.Equal(t, want, got)

	_, err = egress.ParseAllowlist("10.0.0.0/8,intranet")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"intranet"`)
}

// TestClient drives the guarded client against a real local server: the
// guard must act on the address dialled, whatever the URL says.
func TestClient(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

	t.Run("loopback by address is refused", func(t *testing.T) {
		c := egress.NewClient(egress.NewGuard(nil), egress.Options{})
		_, err := get(c, srv.URL)
		assert.ErrorIs(t, err, egress.ErrRefused)
	})
	t.Run("a hostname resolving to loopback is refused at dial", func(t *testing.T) {
		c := egress.NewClient(egress.NewGuard(nil), egress.Options{})
		_, err := get(c, "http://localhost:"+strconv.Itoa(port)+"/")
		assert.ErrorIs(t, err, egress.ErrRefused)
	})
	t.Run("allowlisted loopback is reached", func(t *testing.T) {
		c := egress.NewClient(egress.NewGuard(loopback), egress.Options{})
		code, err := get(c, srv.URL)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, code)
	})
	t.Run("redirects are not followed", func(t *testing.T) {
		before := hits
		c := egress.NewClient(egress.NewGuard(loopback), egress.Options{})
		_, err := get(c, srv.URL+"/redirect")
		assert.ErrorIs(t, err, egress.ErrRedirect)
		assert.Equal(t, before+1, hits, "got the redirect target requested, want only the first request")
	})
	t.Run("proxy settings are ignored", func(t *testing.T) {
		// A proxy would dial for us, out of the guard's sight.
		t.Setenv("HTTP_PROXY", srv.URL)
		before := hits
		c := egress.NewClient(egress.NewGuard(nil), egress.Options{})
		_, err := get(c, "http://ctmflow-test.invalid/")
		require.Error(t, err, "got an answer, want the unresolvable host to fail")
		assert.Equal(t, before, hits, "got the request sent to the proxy, want it dialled directly")
	})
}

func get(c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
