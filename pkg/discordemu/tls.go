package discordemu

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sort"
	"time"
)

// testCert is the emulator's self-signed TLS identity (Config.TLS).
type testCert struct {
	cert tls.Certificate
	pool *x509.CertPool
	pem  []byte
}

// certHosts lists the names the certificate is valid for: loopback, localhost,
// Discord's hostnames (for clients that dial the emulator for every host) and
// the host of each listen address unless it is unspecified (0.0.0.0, ::).
func certHosts(listenAddrs ...string) (dns []string, ips []net.IP) {
	names := map[string]bool{"localhost": true}
	for h := range discordHosts {
		names[h] = true
	}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, addr := range listenAddrs {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				ips = append(ips, ip)
			}
			continue
		}
		names[host] = true
	}
	for n := range names {
		dns = append(dns, n)
	}
	sort.Strings(dns)
	return dns, ips
}

// newTestCert makes a self-signed ECDSA P-256 certificate valid for a day
// around now, for the given listen addresses.
func newTestCert(now time.Time, listenAddrs ...string) (*testCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("discordemu: tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("discordemu: tls serial: %w", err)
	}
	dns, ips := certHosts(listenAddrs...)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "discordemu", Organization: []string{"scimcord discordemu (test only)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("discordemu: tls certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("discordemu: tls certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &testCert{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pool: pool,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// serverConfig is the listeners' TLS configuration. HTTP/1.1 only, like the
// plain listener, so one connection is one ConnID in the recorder.
func (c *testCert) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// clientConfig trusts only the emulator's certificate.
func (c *testCert) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
}

// CertificatePEM returns the PEM-encoded self-signed certificate the emulator
// serves with Config.TLS, for clients in other processes (curl --cacert); nil
// without TLS.
func (e *Emulator) CertificatePEM() []byte {
	if e.tls == nil {
		return nil
	}
	return append([]byte(nil), e.tls.pem...)
}

// DialingHTTPClient returns a client that keeps every URL as it is and dials
// the emulator for every host, the alternative to HTTPClient's rewriting
// (discord-api-facts §7.5 B). With Config.TLS it verifies the emulator's
// certificate under the real host name (discord.com), without
// InsecureSkipVerify; without TLS it only works for http:// URLs. It has no
// timeout of its own.
func (e *Emulator) DialingHTTPClient() *http.Client {
	addr := e.ln.Addr().String()
	d := &net.Dialer{Timeout: 10 * time.Second}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	if e.tls != nil {
		t.TLSClientConfig = e.tls.clientConfig()
	}
	return &http.Client{Transport: t}
}
