package discordemu

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.TLS = true; c.Profile = "off" })

	t.Run("the listener serves HTTPS", func(t *testing.T) {
		t.Parallel()
		if !strings.HasPrefix(e.URL(), "https://") || !strings.HasPrefix(e.AdminURL(), "https://") {
			t.Fatalf("URL %q, AdminURL %q: want https", e.URL(), e.AdminURL())
		}
		// A client that trusts only the system roots refuses the self-signed certificate.
		_, err := (&http.Client{}).Get(e.URL() + "/api/v10/gateway")
		var unknown x509.UnknownAuthorityError
		if err == nil || !errors.As(err, &unknown) {
			t.Fatalf("GET with system roots: err %v, want x509.UnknownAuthorityError", err)
		}
		// Plain HTTP to the TLS listener is not served as an API request.
		res, err := (&http.Client{}).Get("http://" + strings.TrimPrefix(e.URL(), "https://") + "/api/v10/gateway")
		if err == nil {
			res.Body.Close()
			if res.StatusCode < 400 {
				t.Fatalf("plain HTTP to the TLS listener: %d", res.StatusCode)
			}
		}
	})

	t.Run("discordgo through HTTPClient verifies the certificate and reaches the guild", func(t *testing.T) {
		t.Parallel()
		s := session(t, e, tToken)
		m, err := s.GuildMember(tGuild, tBob, discordgo.WithContext(testCtx(t)))
		if err != nil {
			t.Fatalf("GuildMember: %v", err)
		}
		if !hasStr(m.Roles, tLow) {
			t.Fatalf("bob's roles %v, want Low", m.Roles)
		}
		if err := s.GuildMemberRoleAdd(tGuild, tAlice, tLow, discordgo.WithContext(testCtx(t))); err != nil {
			t.Fatalf("GuildMemberRoleAdd: %v", err)
		}
		if m := mustState(t, e, tGuild).Member(tAlice); m == nil || !hasStr(m.Roles, tLow) {
			t.Fatalf("alice after the PUT: %+v, want the Low role", m)
		}
	})

	t.Run("discordgo dialing the emulator for every host verifies discord.com's name", func(t *testing.T) {
		t.Parallel()
		s, err := discordgo.New("Bot " + tToken)
		if err != nil {
			t.Fatal(err)
		}
		s.StateEnabled = false
		s.Client = e.DialingHTTPClient()
		g, err := s.Guild(tGuild2, discordgo.WithContext(testCtx(t)))
		if err != nil {
			t.Fatalf("Guild: %v", err)
		}
		if g.ID != tGuild2 {
			t.Fatalf("guild id %q", g.ID)
		}
		var found bool
		for _, r := range e.Recorder().Requests(RequestFilter{}) {
			if r.Path == "/api/v9/guilds/"+tGuild2 && r.Method == http.MethodGet {
				found = true
			}
		}
		if !found {
			t.Fatal("the recorder has no GET /api/v9/guilds/{id}: the request did not reach the emulator with its real path")
		}
	})

	t.Run("the certificate names Discord's hosts and loopback, not others", func(t *testing.T) {
		t.Parallel()
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(e.CertificatePEM()) {
			t.Fatal("CertificatePEM is not a PEM certificate")
		}
		addr := strings.TrimPrefix(e.URL(), "https://")
		for _, tc := range []struct {
			name string
			ok   bool
		}{
			{"discord.com", true}, {"discordapp.com", true}, {"cdn.discordapp.com", true},
			{"localhost", true}, {"127.0.0.1", true}, {"example.com", false},
		} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: tc.name, MinVersion: tls.VersionTLS12})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("handshake as %q: err %v, want ok=%v", tc.name, err, tc.ok)
			}
		}
	})

	t.Run("the admin client works over TLS", func(t *testing.T) {
		t.Parallel()
		cfg, err := e.Admin().Config(testCtx(t))
		if err != nil {
			t.Fatalf("Admin().Config: %v", err)
		}
		if !cfg.TLS {
			t.Fatal("GET /_emu/config does not report tls: true")
		}
	})
}

func TestTLS_SeparateAdminListener(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.TLS = true; c.AdminListen = "127.0.0.1:0" })
	if !strings.HasPrefix(e.AdminURL(), "https://") || e.AdminURL() == e.URL() {
		t.Fatalf("AdminURL %q (URL %q): want its own https listener", e.AdminURL(), e.URL())
	}
	if _, err := e.Admin().State(testCtx(t), tGuild); err != nil {
		t.Fatalf("Admin().State over TLS: %v", err)
	}
}

func TestTLS_OffByDefault(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, nil)
	if !strings.HasPrefix(e.URL(), "http://") || e.CertificatePEM() != nil {
		t.Fatalf("URL %q, certificate %d bytes: want plain HTTP and none", e.URL(), len(e.CertificatePEM()))
	}
	// DialingHTTPClient without TLS serves http:// URLs.
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, "http://discord.com/api/v10/users/@me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bot "+tToken)
	res, err := e.DialingHTTPClient().Do(req)
	if err != nil {
		t.Fatalf("GET http://discord.com via DialingHTTPClient: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestCertHosts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		addrs   []string
		wantDNS string
		wantIP  string
		noIP    string
	}{
		{name: "an explicit host name is added", addrs: []string{"emu.internal:8090"}, wantDNS: "emu.internal"},
		{name: "an explicit IP is added", addrs: []string{"10.1.2.3:8090"}, wantIP: "10.1.2.3"},
		{name: "the unspecified address is not", addrs: []string{"0.0.0.0:8090"}, noIP: "0.0.0.0"},
		{name: "an empty or malformed address is ignored", addrs: []string{"", "nonsense"}, wantDNS: "discord.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dns, ips := certHosts(tc.addrs...)
			if tc.wantDNS != "" && !hasStr(dns, tc.wantDNS) {
				t.Errorf("DNS names %v lack %q", dns, tc.wantDNS)
			}
			var ipStrs []string
			for _, ip := range ips {
				ipStrs = append(ipStrs, ip.String())
			}
			if tc.wantIP != "" && !hasStr(ipStrs, tc.wantIP) {
				t.Errorf("IPs %v lack %q", ipStrs, tc.wantIP)
			}
			if tc.noIP != "" && hasStr(ipStrs, tc.noIP) {
				t.Errorf("IPs %v include %q", ipStrs, tc.noIP)
			}
			if !hasStr(ipStrs, net.IPv4(127, 0, 0, 1).String()) || !hasStr(dns, "localhost") {
				t.Errorf("loopback missing: %v %v", dns, ipStrs)
			}
		})
	}
}
