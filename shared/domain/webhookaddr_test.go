package domain_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestWebhookAddrRefused(t *testing.T) {
	t.Parallel()
	refused := []string{
		"127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"100.64.0.1", "100.127.255.255", "169.254.169.254", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "192.0.0.170", "168.63.129.16", "::ffff:168.63.129.16",
		"::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		"64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:7f00:1::1", "2002:c0a8:101::1",
		"fe80::1", "fe80::1%eth0", "fd00:ec2::254", "fc00::1", "ff02::1", "fec0::1", "2001:db8::1", "2001::1", "3fff::1", "5f00::1", "100::1",
	}
	for _, s := range refused {
		assert.NotEmpty(t, domain.WebhookAddrRefused(netip.MustParseAddr(s)), s)
	}
	allowed := []string{"93.184.215.14", "8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "168.63.129.17",
		"::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1"}
	for _, s := range allowed {
		assert.Empty(t, domain.WebhookAddrRefused(netip.MustParseAddr(s)), s)
	}
	assert.Equal(t, "loopback", domain.WebhookAddrRefused(netip.MustParseAddr("::ffff:127.0.0.1")))
	assert.Equal(t, "link-local", domain.WebhookAddrRefused(netip.MustParseAddr("169.254.169.254")))
	assert.NotEmpty(t, domain.WebhookAddrRefused(netip.Addr{}), "the zero address")
}

func TestValidWebhookURL(t *testing.T) {
	t.Parallel()
	always := []string{ // refused with or without private targets allowed
		"ftp://hooks.example/x", "javascript:alert(1)", "/relative", "https://u:p@hooks.example/x", "https://token@hooks.example/x",
		"http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://127.0.1/", "http://0x7f.0.0.1/",
		"http://017700000001/", "http://1.2.3.04/", "http://[fe80::1%25eth0]/", "https://hooks.example/" + string(make([]byte, 2048)),
		"http://hooks.example:65536/", "http://hooks.example:0/", "https://[2606:4700::1111]:99999/h", "http://hooks.example:0080/",
		"http://hooks.example:/", "https://hooks.example/a b", "https://hooks.example/a\tb", "https://hooks.example/a\u00a0b",
		// Read as the HTTP client reads them (IDNA's lookup mapping).
		"http://0x7f.0.0.①/", "http://2130706433.①/",
		// Not a host name: an empty label, a hyphen first or last, a label
		// over 63 characters, a character no host name has.
		"https://a..b.example/x", "https://-bad-.example/", "https://bad-.example/", "https://hooks.-example/",
		"https://" + strings.Repeat("a", 64) + ".example/", "https://a!b.example/", "https://a*b.example/",
	}
	private := []string{ // refused unless private targets are allowed
		"http://127.0.0.1:8080/hook", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://10.0.0.5/",
		"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.100.100.200/", "http://0.0.0.0/",
		"http://[64:ff9b::7f00:1]/", "http://168.63.129.16/machine?comp=goalstate", "http://localhost:7071/", "http://LOCALHOST./", "http://api.localhost/", "http://printer.local/",
		"http://metadata.google.internal/computeMetadata/v1/", "http://metadata/", "http://intranet/", "http://router.home.arpa/",
		"http://127.0.0.①:7390/hook", "http://169.254.169.②⑤④/", "http://10.0.0.①/", "http://api.ⓛocalhost./",
		"http://printer.ⓛocal/", "http://metadata.google.ⓘnternal/", "http://ＬＯＣＡＬＨＯＳＴ/",
	}
	public := []string{"https://hooks.example/x?token=s3cret", "http://93.184.215.14:8443/h", "https://[2606:4700::1111]/h",
		"https://hooks.example./x", "https://a.b.c.hooks.example/x#frag", "https://xn--bcher-kva.example/", "https://bücher.example/",
		"https://a-b.example/x", "https://" + strings.Repeat("a", 63) + ".example/", "https://my_hook.contoso.example/h"}
	for _, s := range always {
		for _, allow := range []bool{false, true} {
			err := domain.ValidWebhookURL("webhookUrl", s, allow)
			if assert.Error(t, err, "%s (allowPrivate=%v)", s, allow) {
				assert.True(t, domain.IsCode(err, domain.EINVALID))
				assert.Equal(t, "webhookUrl", err.(*domain.Error).Field)
			}
		}
	}
	for _, s := range private {
		err := domain.ValidWebhookURL("webhookUrl", s, false)
		if assert.Error(t, err, s) {
			assert.Equal(t, "webhookUrl", err.(*domain.Error).Field)
		}
		assert.NoError(t, domain.ValidWebhookURL("webhookUrl", s, true), s)
	}
	for _, s := range public {
		assert.NoError(t, domain.ValidWebhookURL("webhookUrl", s, false), s)
	}
}
