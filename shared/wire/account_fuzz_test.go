package wire_test

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"testing"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/shared/wire"
)

// FuzzParseSignUp holds sign-up's webhook rule to what it promises: it
// never panics, bad input is a client error, what it accepts without
// private targets is also accepted with them, and an accepted webhook URL
// parses, has no user name, and names no refused IP address unless
// private targets are allowed.
func FuzzParseSignUp(f *testing.F) {
	for _, u := range []string{"https://hooks.example/x?token=1", "http://127.0.0.1:7071/h", "http://[::ffff:127.0.0.1]/",
		"http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://localhost./", "http://api.localhost/",
		"http://metadata.google.internal/", "http://[fd00:ec2::254]/", "http://[64:ff9b::a9fe:a9fe]/", "https://u:p@hooks.example/",
		"http://[fe80::1%25eth0]/", "http://93.184.215.14/", "javascript:alert(1)", "http://intranet/", "http://%31%32%37.0.0.1/"} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, hook string) {
		body, _ := json.Marshal(map[string]string{"name": "A", "contactEmail": "a@b.example", "webhookUrl": hook})
		strict, err := wire.ParseSignUp(body, false)
		if err != nil {
			mustBeInvalid(t, err, body)
		}
		loose, lerr := wire.ParseSignUp(body, true)
		if lerr != nil {
			mustBeInvalid(t, lerr, body)
			if err == nil {
				t.Fatalf("%q is accepted without private targets but not with them", hook)
			}
			return
		}
		if loose.WebhookURL == "" {
			return
		}
		u, perr := url.Parse(loose.WebhookURL)
		if perr != nil || u.User != nil || u.Host == "" {
			t.Fatalf("accepted %q: parse error %v, user %v", hook, perr, u.User)
		}
		if strict != nil {
			if a, err := netip.ParseAddr(u.Hostname()); err == nil && domain.WebhookAddrRefused(a) != "" {
				t.Fatalf("accepted %q, whose address is %s", hook, domain.WebhookAddrRefused(a))
			}
		}
	})
}
