package domain_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/domain"
)

func TestValidEmailAddress(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"ana@example.com",
		"a.b-c+tag@mail.example.co.uk",
		"o'brien@example.ie",
		"x@a-b.example",
		"{weird}|!#$%&*=?^_`~@example.org",
		strings.Repeat("l", 64) + "@example.com",
		"a@" + strings.Repeat("d", 63) + ".com",
	} {
		assert.True(t, domain.ValidEmailAddress(ok), ok)
	}
	for _, bad := range []string{
		"",
		"plainaddress",
		"@example.com",
		"ana@",
		"ana@localhost",                  // one label: not an Internet domain
		"ana@@example.com",               // two @
		"ana@exa@mple.com",               // two @
		".ana@example.com",               // leading dot
		"ana.@example.com",               // trailing dot
		"a..na@example.com",              // doubled dot
		"ana@example..com",               // empty label
		"ana@-example.com",               // hyphen at a label's edge
		"ana@example-.com",               // hyphen at a label's edge
		"ana@1.2.3.4",                    // numeric top-level domain
		"ana@[192.0.2.1]",                // address literal
		`"ana maria"@example.com`,        // quoted local part
		"Ana <ana@example.com>",          // display name
		"ana @example.com",               // space
		"ana@example.com\r\nBcc: x@y.io", // header injection
		"ana(comment)@example.com",
		"anä@example.com", // non-ASCII
		"ana@exämple.com",
		strings.Repeat("l", 65) + "@example.com",
		"a@" + strings.Repeat("d", 64) + ".com",
		"a@" + strings.Repeat("abcdefgh.", 30) + "com", // over 254 in all
	} {
		assert.False(t, domain.ValidEmailAddress(bad), bad)
	}
}

func TestValidPhoneNumber(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"+14255550123", "+442071838750", "+6834002", "+123456789012345"} {
		assert.True(t, domain.ValidPhoneNumber(ok), ok)
	}
	for _, bad := range []string{
		"", "+", "14255550123", // no +
		"+1 425 555 0123", "+1-425-555-0123", "+1(425)5550123", // punctuation
		"+04255550123",                                  // country codes do not start with 0
		"+123456",                                       // too short
		"+1234567890123456",                             // 16 digits: over E.164's 15
		"++14255550123", "+1425555012a", "+١٤٢٥٥٥٥٠١٢٣", // non-ASCII digits
	} {
		assert.False(t, domain.ValidPhoneNumber(bad), bad)
	}
}

func TestSubscribeRules(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageScheduled)
	a := domain.Subscription{ID: "a", EmailAddress: "ana@example.com", SMS: "+14255550123", Token: "tok-a"}
	got, err := d.Subscribe(a)
	require.NoError(t, err)
	assert.Equal(t, a, got)

	got, err = d.Subscribe(domain.Subscription{ID: "a2", EmailAddress: "Ana@Example.com", SMS: "+14255550123"})
	assert.ErrorIs(t, err, domain.ErrNoChange, "the same addresses: the existing subscription")
	assert.Equal(t, "a", got.ID)

	_, err = d.Subscribe(domain.Subscription{ID: "b", SMS: "+14255550123"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT))
	assert.Equal(t, "sms", domain.ErrorField(err))

	_, err = d.Subscribe(domain.Subscription{ID: "c"})
	assert.True(t, domain.IsCode(err, domain.EINVALID), "no address at all")

	id, keys, ok := d.ByToken("tok-a")
	assert.True(t, ok)
	assert.Equal(t, "a", id)
	assert.Equal(t, []string{domain.SuppressionKey(domain.ChannelEmail, "ana@example.com"), domain.SuppressionKey(domain.ChannelSMS, "+14255550123")}, keys)
	_, _, ok = d.ByToken("tok-")
	assert.False(t, ok)
	_, _, ok = d.ByToken("")
	assert.False(t, ok)

	require.NoError(t, d.Unsubscribe("a"))
	assert.True(t, domain.IsCode(d.Unsubscribe("a"), domain.ENOTFOUND))
	_, _, ok = d.ByToken("tok-a")
	assert.False(t, ok, "ended by its link: spent")

	for i := range domain.MaxSubscriptions {
		_, err := d.Subscribe(domain.Subscription{ID: string(rune('k' + i)), EmailAddress: string(rune('k'+i)) + "@example.com"})
		require.NoError(t, err)
	}
	_, err = d.Subscribe(domain.Subscription{ID: "z", EmailAddress: "z@example.com"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "bounded")

	ended := delivery(domain.StageCompleted)
	_, err = ended.Subscribe(domain.Subscription{ID: "late", EmailAddress: "late@example.com"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "an ended delivery takes no new subscription")
}

func TestSubscriptionChannels(t *testing.T) {
	t.Parallel()
	s := domain.Subscription{EmailAddress: "a@b.example", SMS: "+14255550123"}
	assert.Equal(t, []domain.Channel{domain.ChannelEmail, domain.ChannelSMS}, s.Channels())
	assert.Equal(t, "+14255550123", s.Address(domain.ChannelSMS))
	assert.Equal(t, "", s.Address("fax"))
	assert.Empty(t, (&domain.Subscription{}).Channels())
}

// A subscription the business ends keeps its link working: the link finds
// what to suppress, and spends it; a delivery takes MaxSubscriptionsMade
// subscriptions in all, so ending and making them cannot go on for ever.
func TestAnEndedSubscriptionsLinkStillWorks(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageCreated)
	_, err := d.Subscribe(domain.Subscription{ID: "a", EmailAddress: "ana@example.com", Token: "tok-a"})
	require.NoError(t, err)
	require.NoError(t, d.EndSubscription("a"))
	_, ok := d.Subscription("a")
	assert.False(t, ok, "no longer sent to")
	id, keys, ok := d.ByToken("tok-a")
	require.True(t, ok, "the link still works")
	assert.Empty(t, id)
	assert.Equal(t, []string{domain.SuppressionKey(domain.ChannelEmail, "ana@example.com")}, keys)
	require.NoError(t, d.Unlink("tok-a"))
	_, _, ok = d.ByToken("tok-a")
	assert.False(t, ok, "spent")
	assert.ErrorIs(t, d.Unlink("tok-a"), domain.ErrNoChange)

	made := 1
	for ; made < domain.MaxSubscriptionsMade; made++ {
		sid := fmt.Sprintf("s%d", made)
		_, err := d.Subscribe(domain.Subscription{ID: sid, EmailAddress: sid + "@example.com", Token: "tok-" + sid})
		require.NoError(t, err, "subscription %d", made+1)
		require.NoError(t, d.EndSubscription(sid))
	}
	_, err = d.Subscribe(domain.Subscription{ID: "over", EmailAddress: "over@example.com", Token: "tok-over"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "%d made in all: %v", made, err)
	assert.LessOrEqual(t, len(d.EndedSubscriptions), domain.MaxSubscriptionsMade)
}

// A subscription with an e-mail address and a phone number sends each its
// own link, which suppresses that address alone; pressed, either ends the
// subscription, and the other still works until it is pressed in turn. The
// links of ended two-address subscriptions stay bounded.
func TestEachAddressHasALinkOfItsOwn(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageCreated)
	_, err := d.Subscribe(domain.Subscription{ID: "a", EmailAddress: "ana@example.com", SMS: "+14255550123", Token: "tok-a", SMSToken: "sms-a"})
	require.NoError(t, err)
	s, _ := d.Subscription("a")
	assert.Equal(t, "tok-a", s.LinkToken(domain.ChannelEmail))
	assert.Equal(t, "sms-a", s.LinkToken(domain.ChannelSMS))
	mail, text := domain.SuppressionKey(domain.ChannelEmail, "ana@example.com"), domain.SuppressionKey(domain.ChannelSMS, "+14255550123")
	_, keys, ok := d.ByToken("tok-a")
	require.True(t, ok)
	assert.Equal(t, []string{mail}, keys)
	_, keys, _ = d.ByToken("sms-a")
	assert.Equal(t, []string{text}, keys)

	require.NoError(t, d.Unlink("tok-a"))
	assert.Empty(t, d.Subscriptions, "ended")
	_, _, ok = d.ByToken("tok-a")
	assert.False(t, ok, "spent")
	id, keys, ok := d.ByToken("sms-a")
	require.True(t, ok, "the text's link still works")
	assert.Empty(t, id)
	assert.Equal(t, []string{text}, keys)
	require.NoError(t, d.Unlink("sms-a"))
	assert.Empty(t, d.EndedSubscriptions)

	// One made before links per address has one link for both.
	_, err = d.Subscribe(domain.Subscription{ID: "old", EmailAddress: "bo@example.com", SMS: "+14255550124", Token: "tok-old"})
	require.NoError(t, err)
	old, _ := d.Subscription("old")
	assert.Equal(t, "tok-old", old.LinkToken(domain.ChannelSMS))
	_, keys, _ = d.ByToken("tok-old")
	assert.Len(t, keys, 2)

	for made := 2; made < domain.MaxSubscriptionsMade; made++ {
		sid := fmt.Sprintf("s%d", made)
		_, err := d.Subscribe(domain.Subscription{ID: sid, EmailAddress: sid + "@example.com", SMS: fmt.Sprintf("+1425555%04d", made), Token: "tok-" + sid, SMSToken: "sms-" + sid})
		require.NoError(t, err, "subscription %d", made+1)
		require.NoError(t, d.EndSubscription(sid))
	}
	_, err = d.Subscribe(domain.Subscription{ID: "over", EmailAddress: "over@example.com", Token: "tok-over"})
	assert.True(t, domain.IsCode(err, domain.ECONFLICT), "as many made as a delivery takes: %v", err)
	assert.LessOrEqual(t, len(d.EndedSubscriptions), 2*domain.MaxSubscriptionsMade)
}

// The link of a kept message (KeptToken) finds its subscription and no
// address to suppress, and ends the subscription as the business would:
// the link sent for it (Token) still works, and suppresses.
func TestAKeptMessagesLinkSuppressesNothing(t *testing.T) {
	t.Parallel()
	d := delivery(domain.StageCreated)
	_, err := d.Subscribe(domain.Subscription{ID: "a", EmailAddress: "ana@example.com", Token: "tok-a", KeptToken: "kept-a"})
	require.NoError(t, err)
	id, keys, ok := d.ByToken("kept-a")
	require.True(t, ok)
	assert.Equal(t, "a", id)
	assert.Empty(t, keys, "no address received the kept message")
	require.NoError(t, d.Unlink("kept-a"))
	_, ok = d.Subscription("a")
	assert.False(t, ok, "ended")
	_, _, ok = d.ByToken("kept-a")
	assert.False(t, ok, "the kept link is spent")
	id, keys, ok = d.ByToken("tok-a")
	require.True(t, ok, "the sent link still works")
	assert.Empty(t, id)
	assert.Equal(t, []string{domain.SuppressionKey(domain.ChannelEmail, "ana@example.com")}, keys)
}

func TestSuppressionKeys(t *testing.T) {
	t.Parallel()
	email := func(a string) string { return domain.SuppressionKey(domain.ChannelEmail, a) }
	assert.Equal(t, email("bob@example.com"), email(" BOB@Example.COM "), "case and white space")
	assert.Equal(t, email("bob@example.com"), email("bob+news@example.com"), "a +tag reaches the same mailbox")
	assert.NotEqual(t, email("bob@example.com"), email("b.ob@example.com"), "dots are the provider's business")
	assert.NotEqual(t, email("bob@example.com"), domain.SuppressionKey(domain.ChannelSMS, "bob@example.com"), "one channel's address is not another's")
}
